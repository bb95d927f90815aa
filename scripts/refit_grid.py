"""Refit the bundled model's projection heads under named variants and score each on one split.

    python scripts/refit_grid.py --manifest data/corpus-bars/manifest.parquet --split val \\
        control mlp-a mlp-ai bundled

The base is the recipe that made the bundled checkpoint (the training config stored in
``checkpoints/demo/config.json``: ``configs/demo-text-refit.yaml`` over the first stage), started
from the bundled checkpoint itself (``train.init``), so each variant is a further head refit over
the same frozen towers. The towers' features are cached once in ``--cache`` and shared by every
variant whose towers are the same (a different head does not change them). Each variant trains
into ``OUT/NAME/`` and is scored into ``OUT/NAME/SPLIT.json`` (``scripts/demo_report.py``'s
``evaluate``); both steps are skipped when their output is there, so the grid resumes.
``bundled`` scores ``checkpoints/demo`` without training. Choose on ``val``; check the choice on
``test`` once.

The printed table holds what the demo's acceptance reads: audio<->image MRR and R@1 (full
captions), text->audio with content-only captions, and the unseen soundfont's audio->image MRR
against the seen one (where the split has it rendered: the test split). Its nDCG@10 is the
caption protocol's (items with the same caption relevant); the graded one (matching metadata) is
``xmr eval``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

BUNDLED = ROOT / "checkpoints" / "demo"
MLP_AUDIO = ["model.audio.head=mlp", "model.audio.head_hidden=512"]
VARIANTS: dict[str, list[str]] = {
    "control": [],
    "mlp-a": MLP_AUDIO,
    "mlp-ai": [*MLP_AUDIO, "model.image.head=mlp", "model.image.head_hidden=512"],
    "mlp-at": [*MLP_AUDIO, "model.text.head_hidden=1024"],
    "mlp-a-fd": [*MLP_AUDIO, "train.feature_dropout=0.2"],
    "p2w": ["train.partial_to_whole=0.5"],
    "p2w-0.25": ["train.partial_to_whole=0.25"],
    "p2w-mlp-at": ["train.partial_to_whole=0.5", *MLP_AUDIO, "model.text.head_hidden=1024"],
    "pcp": ["model.audio.profile=[pitch_classes]"],
    "profiles": ["model.audio.profile=[pitch_classes,tempo]"],
    "profiles-p2w": ["model.audio.profile=[pitch_classes,tempo]", "train.partial_to_whole=0.5"],
}


def train_variant(name: str, out: Path, manifest: Path, cache: Path, extra: list[str]) -> Path:
    """Train one variant into ``out`` (skipped when its checkpoint is there); returns the checkpoint."""
    from rebuild_demo import run_done, train_here

    from xmr.train.config import load_config

    if not run_done(out):
        base = json.loads((BUNDLED / "config.json").read_text())["train_config"]
        overrides = [f"data.manifest={manifest}", f"data.cache_dir={cache}", f"train.init={BUNDLED}",
                     "train.progress=false", "train.tensorboard=false", *VARIANTS[name], *extra]
        train_here(load_config(None, overrides, base=base), out, name)
    return out / "checkpoint"


def summary(results: dict) -> dict[str, float]:
    """The acceptance's measures out of ``evaluate``'s results."""
    full, content = results["full captions"], results["content-only captions"]
    row = {"a→i MRR": full["audio→image"]["MRR"], "a→i R@1": full["audio→image"]["R@1"],
           "i→a MRR": full["image→audio"]["MRR"], "i→a R@1": full["image→audio"]["R@1"],
           "t→a MRR": content["text→audio"]["MRR"], "a→t MRR": content["audio→text"]["MRR"],
           "t→i MRR": content["text→image"]["MRR"], "t→a nDCG@10 (caption)": content["text→audio"]["nDCG@10"]}
    if "unseen soundfont" in results:
        unseen = results["unseen soundfont"]["audio→image"]["MRR"]
        row["unseen a→i MRR"], row["unseen × seen"] = unseen, unseen / row["a→i MRR"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help=f"names: {', '.join(VARIANTS)}, bundled")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, default=Path("runs/grid"))
    parser.add_argument("--cache", type=Path, default=Path("runs/refit-cache"),
                        help="the frozen towers' features and the decoded items, shared by the variants")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="an override added to every variant")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS and v != "bundled"]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}, bundled")

    from demo_report import evaluate

    rows: dict[str, dict[str, float]] = {}
    for name in args.variants:
        out = args.out / name
        scored = out / f"{args.split}.json"
        if not scored.is_file():
            ckpt = BUNDLED if name == "bundled" else train_variant(name, out, args.manifest, args.cache,
                                                                    args.extra)
            results = evaluate(ckpt, args.manifest, args.split, args.cache)
            out.mkdir(parents=True, exist_ok=True)
            scored.write_text(json.dumps(results, indent=2, default=float))
        rows[name] = summary(json.loads(scored.read_text()))
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items()}, ensure_ascii=False),
              flush=True)

    keys = list(next(iter(rows.values())))
    print(f"\n{args.split} split\n")
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" if k in row else "" for k in keys) + " |")


if __name__ == "__main__":
    main()
