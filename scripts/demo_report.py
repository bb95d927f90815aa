"""Evaluate a trained checkpoint on a manifest split and write its training report (Markdown + JSON).

    python scripts/demo_report.py --run runs/demo --manifest data/corpus/manifest.parquet \\
        --out checkpoints/demo [--text-run runs/demo-text]

With ``--text-run`` (scripts/rebuild_demo.py's text stage: the projection heads refitted on top
of ``--run``) that run's checkpoint is the one evaluated, and its steps and config are reported too.
``--checkpoint`` names the evaluated checkpoint outright (the rebuild's part stage: the text
stage's checkpoint with a head for short clips, :mod:`xmr.train.part_head`); the fit of its part
head, when it has one, is reported with its clips' top-10 rates before and after.

Every direction between audio, image and text is scored, text with both caption styles (full and
content-only), and audio also as rendered with the soundfont training never saw (the manifest's
``audio_unseen`` column), with the candidate-set size and the random-ranking (chance) value.
Audio embeddings are the mean over the model's window with 50% overlap (Nakatsuka et al. 2023, Sec. 4.1.2).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

KEYS = ("R@1", "R@5", "R@10", "MRR", "MedR")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def evaluate(checkpoint: Path, manifest: Path, split: str, cache: Path) -> dict:
    import torch

    import xmr
    from xmr.media.audio import load_audio
    from xmr.train.adapter import ModelAdapter
    from xmr.train.data import ItemStore
    from xmr.train.evaluate import caption_of, embed_audio_items, embed_items, score_items

    torch.set_num_threads(1)
    model = xmr.load_model(checkpoint)
    adapter = ModelAdapter(model, modalities=model.modalities, device=torch.device("cpu"))
    pre = adapter.preprocessing()
    items = ItemStore.from_manifest(manifest, split=split, sample_rate=pre["sample_rate"],
                                    image_size=pre["image_size"], image_mode=pre["image_mode"],
                                    image_resize=pre["image_resize"], cache_dir=cache, progress=True)
    results: dict = {"split": split, "items": len(items), "audio window seconds": model.audio_window_seconds}
    emb_full = embed_items(adapter, items, caption_index=0)
    texts_full = [caption_of(items, i, 0) for i in range(len(items))]
    results["full captions"] = score_items(emb_full, texts=texts_full)
    adapter.clear_caches()
    emb_content = {"audio": emb_full["audio"], "image": emb_full["image"],
                   "text": embed_items(adapter, items, modalities=("text",), caption_index=1)["text"]}
    texts_content = [caption_of(items, i, 1) for i in range(len(items))]
    content = score_items(emb_content, texts=texts_content)
    results["content-only captions"] = {k: v for k, v in content.items() if "text" in k}
    frame = items.frame
    if "audio_unseen" in frame and frame["audio_unseen"].notna().all():
        root = Path(manifest).parent
        paths = [p if Path(p).is_absolute() else str(root / p) for p in frame["audio_unseen"]]

        def unseen(i: int) -> np.ndarray:
            return load_audio(paths[i], sample_rate=pre["sample_rate"])

        audio_u = embed_audio_items(adapter, items, list(range(len(items))), wave_fn=unseen)
        res = score_items({"audio": audio_u, "image": emb_full["image"], "text": emb_full["text"]},
                               texts=texts_full)
        results["unseen soundfont"] = {k: v for k, v in res.items() if "audio" in k}
    results["unique captions"] = {"full": len(set(texts_full)), "content-only": len(set(texts_content))}
    return results


def table(block: dict) -> list[str]:
    lines = ["| direction | candidates | R@1 | R@5 | R@10 | MRR | MedR | chance R@1 | chance MRR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for direction, m in block.items():
        ch = m.get("chance", {})
        lines.append(f"| {direction} | {m['candidates']} | " + " | ".join(
            f"{m[k]:.3f}" if k != "MedR" else f"{m[k]:.1f}" for k in KEYS)
            + f" | {ch.get('R@1', float('nan')):.4f} | {ch.get('MRR', float('nan')):.4f} |")
    return lines


CURVE_DIRECTIONS = ("audio→image", "image→audio", "text→audio")


def learning_curve(run: Path, config: dict) -> list[str]:
    """The run's learning curve from ``log.jsonl``: the mean training loss of the steps up to each
    validation and that validation's MRR (its candidates: ``data.val_max_items`` of the val split)."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    vals = [r for r in rows if r.get("kind") == "val"]
    if not vals:
        return []
    train = [r for r in rows if r.get("kind") == "train" and "loss" in r]
    cap = config.get("data", {}).get("val_max_items", "?")
    lines = ["## Learning curve", "",
             f"Validation on at most {cap} items of the val split "
             "(every one a candidate); training loss = the mean over the steps since the previous row.", "",
             "| step | train loss | " + " | ".join(f"{d} MRR" for d in CURVE_DIRECTIONS) + " |",
             "|---:|---:|" + "---:|" * len(CURVE_DIRECTIONS)]
    last = 0
    for v in vals:
        window = [r["loss"] for r in train if last < r["step"] <= v["step"]]
        loss = f"{sum(window) / len(window):.2f}" if window else "–"
        mrr = [f"{v[f'{d}/MRR']:.3f}" if f"{d}/MRR" in v else "–" for d in CURVE_DIRECTIONS]
        lines.append(f"| {v['step']} | {loss} | " + " | ".join(mrr) + " |")
        last = v["step"]
    return [*lines, ""]


def part_head_section(log: dict | None) -> list[str]:
    """The report's lines on a checkpoint's part head (its ``config.json`` ``part_head`` record)."""
    if not log:
        return []
    cfg = log["config"]
    lines = ["## Head for short clips (part head)", "",
             f"A {cfg['head']} head for audio of at most a few seconds, fitted on the audio tower's "
             f"features of {log['clips']} clips of {cfg['min_seconds']:g}-{cfg['max_seconds']:g} s of the "
             f"{log['items']} training items (their main audio and their audio views) against the "
             f"fixed embeddings of the whole items' scores: {cfg['steps']} steps of {cfg['batch_size']} "
             f"clips, every training item a candidate, {log['seconds'] / 60:.1f} min in all. The "
             "towers and every other head are those above, so the tables above (whole excerpts) "
             "do not change.", ""]
    if log.get("loss"):
        curve = ", ".join(f"{v:.2f}" for v in log["loss"][::max(len(log["loss"]) // 10, 1)])
        lines += [f"Its loss (InfoNCE over the {log['items']} training items, mean of 50 steps, every "
                  f"tenth of the fit): {curve}, {log['loss'][-1]:.2f} at the end.", ""]
    val = log.get("val")
    if val:
        lines += [f"One clip per `{val['split']}` item against its {val['candidates']} score images "
                  f"(chance top-10 {min(10 / val['candidates'], 1):.3f}):", "",
                  "| head | clips | top-10 | MRR |", "|---|---:|---:|---:|",
                  *(f"| {name} | {val['clips']} | {val[name]['top-10']:.3f} | {val[name]['MRR']:.3f} |"
                    for name in ("audio head", "part head")), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training run folder (checkpoint/, report.json, ...)")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="where report.md and metrics.json go")
    parser.add_argument("--note", default="", help="a paragraph added to the report")
    parser.add_argument("--text-run", default=None, help="a head refit of --run: its checkpoint is "
                        "evaluated")
    parser.add_argument("--checkpoint", default=None, help="the checkpoint evaluated (default: that of "
                        "--text-run, else of --run)")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    text_run = Path(args.text_run) if args.text_run else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else (text_run or run) / "checkpoint"
    results = evaluate(checkpoint, Path(args.manifest), args.split, run / "cache")
    train = json.loads((run / "report.json").read_text())
    config = json.loads((run / "config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k != "PR"}
        return x

    (out / "metrics.json").write_text(json.dumps(clean(results), indent=2))
    lines = ["# Demo checkpoint: training report", ""]
    if args.note:
        lines += [args.note, ""]
    lines += [
        f"- steps: {train['steps']} (global batch {train['global_batch']}, "
        f"{train['train_items']} training items)",
        f"- training wall time: {train['wall_seconds'] / 60:.1f} min, {train['processes']} process(es) on "
        f"{train['device']} ({_cpu_name()}, 2 cores shared with other work)",
        f"- evaluation: split `{args.split}`, {results['items']} items; audio = mean of the model's "
        f"{results['audio window seconds']} s windows with 50% overlap; for a text side "
        "every item with the same caption string is relevant (captions repeat: "
        f"{results['unique captions']['full']} distinct full and "
        f"{results['unique captions']['content-only']} distinct content-only captions); chance = expected "
        "value under a random ranking.",
        "",
        "## Audio, image and full captions", "", *table(results["full captions"]), "",
        "## Content-only captions (no composer, title or collection)", "",
        *table(results["content-only captions"]), "",
    ]
    if "unseen soundfont" in results:
        lines += ["## Audio rendered with the unseen soundfont", "", *table(results["unseen soundfont"]), ""]
    lines += learning_curve(run, config)
    lines += ["## Training configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    if text_run is not None:
        refit = json.loads((text_run / "report.json").read_text())
        refit_config = json.loads((text_run / "config.json").read_text())
        what = ("The text head alone trained again on top of the checkpoint above, its audio and image "
                "towers and heads frozen" if refit_config["train"]["freeze_heads"] else
                "The three projection heads trained again on top of the checkpoint above, its audio and "
                "image towers frozen (feature dropout "
                f"{refit_config['train'].get('feature_dropout', 0.0):g})")
        copies = int(refit_config["train"].get("feature_copies", 0))
        cached = ("every training item" if not copies else
                  f"every training item and of {copies} training copies of each (spans, views, "
                  "augmentation as the data settings below draw them)")
        lines += ["## Head refit (the evaluated checkpoint)", "",
                  f"{what}: {refit['steps']} steps of {refit['global_batch']} in "
                  f"{refit['wall_seconds'] / 60:.1f} min of steps, after the frozen towers' features of "
                  f"{cached} were computed once.", "",
                  "```json", json.dumps({k: refit_config[k] for k in ("data", "optim", "train")}, indent=2),
                  "```", ""]
    lines += part_head_section(json.loads((checkpoint / "config.json").read_text()).get("part_head"))
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines[:40]))


if __name__ == "__main__":
    main()
