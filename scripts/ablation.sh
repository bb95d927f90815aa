#!/usr/bin/env bash
# Ablation at equal budget (same model, data, steps and batches): InfoNCE vs +XBM vs +SCFEM (E = 2)
# vs the 3CMLF curriculum, on the demo corpus. 3CMLF's ancillary model is the InfoNCE run's
# checkpoint (Chao et al. 2022 take their batch sets from an earlier, pretrained network).
#
#   scripts/ablation.sh MANIFEST OUT_DIR [STEPS] [extra --set overrides...]
#
# Each run writes OUT_DIR/<name>/ (log.jsonl with the validation metrics, checkpoint/); the table
# is printed at the end by scripts/ablation_table.py.
set -euo pipefail
MANIFEST=${1:?manifest}
OUT=${2:?output folder}
STEPS=${3:-300}
shift 3 || true
PY=${PYTHON:-.venv/bin/python}
COMMON=(--set "data.manifest=$MANIFEST" --set "train.steps=$STEPS" --set "train.eval_every=$STEPS"
        --set "train.ckpt_every=0" --set "data.cache_dir=$OUT/cache" --set "train.progress=false" "$@")
run() {  # name config [more --set]
  local name=$1 config=$2; shift 2
  if [ -f "$OUT/$name/report.json" ]; then echo "skip $name (done)"; return; fi
  rm -rf "$OUT/$name"
  echo "== $name ($config)"
  "$PY" -m xmr train --config "$config" --out "$OUT/$name" "${COMMON[@]}" "$@"
}
run infonce configs/demo.yaml
run xbm configs/xbm.yaml --set loss.warmup_steps=$((STEPS / 4))
run scfem configs/scfem.yaml --set loss.warmup_steps=$((STEPS / 4))
run 3cmlf configs/3cmlf.yaml --set "curriculum.ancillary=$OUT/infonce/checkpoint"
"$PY" scripts/ablation_table.py "$OUT"
