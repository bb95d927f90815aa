#!/usr/bin/env bash
# Ablation of the levers of the sequence model at equal budget (same data, steps, global batch,
# warm-up and learning rate): the current `demo` model, then one lever added at a time, then the
# memory / curriculum methods on the new model:
#
#   demo       configs/demo.yaml: PANNs-style CNNs, 64-bin log-mel at a 64 ms hop, 80x160 images
#   frontend   + the log-frequency front end (16 bins/octave, 30 Hz-6 kHz, 20 ms hop; 111 bins)
#   height     + score images 256 px high, aspect kept, width padded to 1,024 (the PANNs image
#              tower still averages over height)
#   seq        + sequence towers: configs/demo-seq.yaml with the model SEQ_MODEL (default
#              demo-seq-lite, the bundled recipe's; demo-seq costs five times as much a step):
#              VGG-style CNNs, height folded into channels, BiGRU over time / left to right; whole
#              excerpts, no affine warp (it would move content out of the masked width)
#   spans      + aligned 2-4 bar sub-excerpts (span_prob 0.75)
#   augment    + real-input augmentation (data.augment: real)
#   views      + training views (data.views: true): the full new recipe, InfoNCE
#   xbm / scfem / 3cmlf   `views` + XBM / + SCFEM (E = 2) / the 3CMLF curriculum (its ancillary
#              model is the `views` run's checkpoint)
#
#   scripts/ablation_levers.sh MANIFEST OUT_DIR [STEPS] [BATCH] [extra --set overrides...]
#
# Each run writes OUT_DIR/<name>/ (log.jsonl with the validation metrics, checkpoint/); a finished
# run (report.json) is skipped on a rerun. RUNS="demo seq views" runs a subset; two invocations
# with disjoint RUNS and their own OUT_DIR run side by side (one thread each). The table (with the
# candidates and chance) is printed at the end by scripts/ablation_table.py.
set -euo pipefail
MANIFEST=${1:?manifest}
OUT=${2:?output folder}
STEPS=${3:-600}
BATCH=${4:-32}
shift 4 || shift $#
PY=${PYTHON:-.venv/bin/python}
SEQ_MODEL=${SEQ_MODEL:-demo-seq-lite}
RUNS=${RUNS:-"demo frontend height seq spans augment views xbm scfem 3cmlf"}
WARM=$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))
COMMON=(--set "data.manifest=$MANIFEST" --set "train.steps=$STEPS" --set "data.batch_size=$BATCH"
        --set "train.eval_every=$STEPS" --set "train.ckpt_every=0" --set "data.cache_dir=$OUT/cache"
        --set "train.progress=false" --set "optim.lr=2e-3" --set "optim.warmup_steps=$WARM" "$@")
LOGFREQ='{sample_rate: 16000, kind: logfreq, n_fft: 4096, win_length: 4096, hop_length: 320, f_min: 30.0, f_max: 6000.0, bins_per_octave: 16}'
FRONTEND=(--set "model.spectrogram=$LOGFREQ" --set "model.audio.options.n_freq=111")
HEIGHT=(--set "model.image_preprocessing={size: [256, 1024], mode: L, resize: pad}"
        --set "model.image.options.n_freq=256")
SEQ=(--set "data.span_prob=0" --set "data.views=false")   # demo-seq.yaml without its data levers
AUG=(--set "data.augment=real")
XBM=(--set "loss.memory=xbm" --set "loss.xbm_size=2048" --set "loss.lambda_xbm=1.0"
     --set "loss.memory_temperature=0.07" --set "loss.warmup_steps=$((STEPS / 4))")
SCFEM=(--set "loss.memory=scfem" --set "loss.memory_epochs=2" --set "loss.lambda_self=0.3"
       --set "loss.lambda_cross=0.2" --set "loss.memory_temperature=0.07" --set "loss.warmup_steps=$((STEPS / 4))")
CML=(--set "curriculum.ancillary=$OUT/views/checkpoint" --set "curriculum.ancillary_modalities=[audio, text]"
     --set "curriculum.schedule=[{batches: easy, epochs: 1, frozen: [text]}, {batches: median, epochs: 1, frozen: [audio]}, {batches: hard, epochs: 1, frozen: []}]")
# The allocator of the CPU recipe (xmr.train.dist.cpu_launch_env: jemalloc when installed). On
# glibc's, the sequence towers' variable-sized tensors kept a process in the kernel zeroing pages
# (demo-seq with the `real` augmentation: 16 s a step of 32, 7.5 s on jemalloc).
eval "$("$PY" - <<'PY'
import shlex
from xmr.train.dist import cpu_launch_env
env = cpu_launch_env()
for key in ("LD_PRELOAD", "MALLOC_CONF"):
    if key in env:
        print(f"export {key}={shlex.quote(env[key])}")
PY
)"
mkdir -p "$OUT"
: > "$OUT/runs.txt"
run() {  # name config [more --set]
  local name=$1 config=$2; shift 2
  case " $RUNS " in *" $name "*) ;; *) return 0 ;; esac
  echo "$name" >> "$OUT/runs.txt"
  if [ -f "$OUT/$name/report.json" ]; then echo "skip $name (done)"; return; fi
  rm -rf "${OUT:?}/$name"
  echo "== $name ($config)"
  "$PY" -m xmr train --config "$config" --out "$OUT/$name" "${COMMON[@]}" "$@"
}
seq_run() {  # name [more --set]: configs/demo-seq.yaml with the model SEQ_MODEL
  local name=$1; shift
  run "$name" configs/demo-seq.yaml --set "model.name=$SEQ_MODEL" "$@"
}
run demo configs/demo.yaml
run frontend configs/demo.yaml "${FRONTEND[@]}"
run height configs/demo.yaml "${FRONTEND[@]}" "${HEIGHT[@]}"
seq_run seq "${SEQ[@]}"
seq_run spans --set "data.views=false"
seq_run augment --set "data.views=false" "${AUG[@]}"
seq_run views "${AUG[@]}"
seq_run xbm "${AUG[@]}" "${XBM[@]}"
seq_run scfem "${AUG[@]}" "${SCFEM[@]}"
seq_run 3cmlf "${AUG[@]}" "${CML[@]}"
"$PY" scripts/ablation_table.py "$OUT"
