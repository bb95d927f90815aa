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

``--partial`` adds the partial queries, scored into ``OUT/NAME/SPLIT-partial.json``: one 4 s clip
per item of the split against its images (``bench/clip_bars.py``'s clips: the top-10 rate and MRR)
and the left half of each item's score against its audio (``bench/robustness.py``'s cut: MRR and
its ratio to the whole score's image->audio MRR). The variants refit heads over the same towers,
so the towers' features of these queries are computed once and shared (:class:`SharedTowers`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

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
    "p2w-0.75": ["train.partial_to_whole=0.75"],
    "p2w-1": ["train.partial_to_whole=1.0"],
    "copies6": ["train.feature_copies=6"],
    "copies6-p2w-0.75": ["train.feature_copies=6", "train.partial_to_whole=0.75"],
}


def train_variant(name: str, out: Path, manifest: Path, cache: Path, extra: list[str]) -> Path:
    """Train one variant into ``out`` (skipped when its checkpoint is there); returns the checkpoint."""
    from rebuild_demo import run_done, train_here

    from xmr.train.config import load_config

    if not run_done(out):
        base = json.loads((BUNDLED / "config.json").read_text())["train_config"]
        init = os.path.relpath(BUNDLED)  # the checkpoint's config records it: no machine's folders
        overrides = [f"data.manifest={manifest}", f"data.cache_dir={cache}", f"train.init={init}",
                     "train.progress=false", "train.tensorboard=false", *VARIANTS[name], *extra]
        train_here(load_config(None, overrides, base=base), out, name)
    return out / "checkpoint"


class SharedTowers:
    """One cache of tower features for models whose towers are the same.

    :meth:`attach` wraps a model's ``tower_features`` so that a batch seen before (by any attached
    model with the same tower weights and tower config) is not run through the tower again; the
    key holds a digest of the towers' weights, the tower's config without its head, the batch and
    its lengths, so models with other towers never share an entry.
    """

    def __init__(self) -> None:
        self.features: dict[tuple[str, ...], object] = {}

    @staticmethod
    def _digest(value) -> str:
        import torch

        h = hashlib.sha256()
        if isinstance(value, dict):
            for key in sorted(value):
                h.update(key.encode())
                h.update(SharedTowers._digest(value[key]).encode())
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(repr(value).encode())
        return h.hexdigest()

    def attach(self, model):
        """Wrap ``model.tower_features`` (in place); returns the model."""
        towers = self._digest(dict(model.towers.state_dict()))
        plain = model.tower_features

        def tower_features(modality, batch, lengths=None):
            config = json.dumps(model.config.tower(modality).without_head(), sort_keys=True, default=str)
            key = (towers, modality, config, self._digest(batch), self._digest(lengths))
            if key not in self.features:
                self.features[key] = plain(modality, batch, lengths).detach()
            return self.features[key]

        model.tower_features = tower_features
        return model


def partial_queries(checkpoint: Path, manifest: Path, split: str, shared: SharedTowers) -> dict:
    """4 s clips (audio->image) and left halves of scores (image->audio) of every item of ``split``."""
    import numpy as np
    import torch
    from clip_bars import measure
    from robustness import _metrics, left_half

    import xmr
    from xmr.data.manifest import read_manifest
    from xmr.index.query import embed_audio, encode_query
    from xmr.media.audio import load_audio
    from xmr.media.image import load_image

    torch.set_num_threads(1)
    model = shared.attach(xmr.load_model(checkpoint))
    df = read_manifest(manifest)
    clips = measure(model, df, split=split, vias=(), progress=False)
    items = df[(df["split"] == split) & df["image"].notna() & df["audio"].notna()].sort_values("id")
    ids = list(items["id"].astype(str))
    sr = int(model.sample_rate)
    audio = np.stack([t.vector for t in embed_audio(model, [load_audio(p, sample_rate=sr)
                                                            for p in items["audio"]])])
    halves = np.stack([encode_query(model, image=left_half(load_image(p))).vector for p in items["image"]])
    return {"4 s clips": {"top-10": clips["top_k_rate"], "MRR": clips["mrr"], "clips": clips["n_clips"],
                          "candidates": clips["n_candidates"]},
            "left half": _metrics(halves, ids, audio, ids)}


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
    if "partial" in results:
        clips, half = results["partial"]["4 s clips"], results["partial"]["left half"]
        row["clips top-10"], row["clips MRR"] = clips["top-10"], clips["MRR"]
        row["half i→a MRR"], row["half × whole"] = half["MRR"], half["MRR"] / row["i→a MRR"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help=f"names: {', '.join(VARIANTS)}, bundled")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, default=Path("runs/grid"))
    parser.add_argument("--cache", type=Path, default=Path("runs/refit-cache"),
                        help="the frozen towers' features and the decoded items, shared by the variants")
    parser.add_argument("--partial", action="store_true", help="also score 4 s clips and half scores")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="an override added to every variant")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS and v != "bundled"]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}, bundled")

    from demo_report import evaluate

    rows: dict[str, dict[str, float]] = {}
    shared = SharedTowers()
    for name in args.variants:
        out = args.out / name
        scored, partial = out / f"{args.split}.json", out / f"{args.split}-partial.json"
        ckpt = BUNDLED if name == "bundled" else out / "checkpoint"
        if not scored.is_file():
            if name != "bundled":
                train_variant(name, out, args.manifest, args.cache, args.extra)
            results = evaluate(ckpt, args.manifest, args.split, args.cache)
            out.mkdir(parents=True, exist_ok=True)
            scored.write_text(json.dumps(results, indent=2, default=float))
        if args.partial and not partial.is_file():
            partial.write_text(json.dumps(partial_queries(ckpt, args.manifest, args.split, shared),
                                          indent=2, default=float))
        results = json.loads(scored.read_text())
        if partial.is_file():
            results["partial"] = json.loads(partial.read_text())
        rows[name] = summary(results)
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items()}, ensure_ascii=False),
              flush=True)

    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    print(f"\n{args.split} split\n")
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" if k in row else "" for k in keys) + " |")


if __name__ == "__main__":
    main()
