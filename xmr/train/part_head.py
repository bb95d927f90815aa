"""A projection head of its own for short audio clips, fitted against the fixed space of whole items.

A visitor's clip of a few seconds holds a bar or two of an item whose score image and caption are
embedded whole. Through the audio head, which serves whole excerpts, such a clip lands far from
its item (on the demo corpus's validation split, a 4 s clip found its item among the top 10 of
1,061 score images for 35 % of the clips; through a part head, 52 %). The part head
(``TowerConfig.part_head``) reads the same tower features and learns only where a clip's item
lies: the towers and every other head stay as they are, as LiT tunes one tower against a locked
other (Zhai et al., *LiT: Zero-Shot Transfer with Locked-image text Tuning*, CVPR 2022), so
nothing indexed changes, and :func:`xmr.index.embed_audio` sends a clip of at most
:data:`~xmr.models.config.PART_SECONDS` through it.

The fit, :func:`fit_part_head`:

1. the targets: the whole score image of every training item through the model (and its first
   caption with ``text_weight``), fixed;
2. the inputs: ``clips_per_item`` clips of ``min_seconds``-``max_seconds`` (drawn uniformly, at a
   uniform offset within the item's bars) of every training item's audio, and ``view_clips`` of
   each of its audio views (other soundfonts), through the frozen audio tower once; every draw
   is seeded by (seed, item, rendering, clip), so it does not depend on the order or the process;
3. InfoNCE (Oord et al., 2018) of each clip against all the targets at once (they are fixed, so
   the softmax runs over every training item rather than a batch), at ``temperature``; the head
   starts as the audio head where it is of the same kind.

The features are kept in ``cache`` (one file per setting of the draw), so a second fit with other
optimiser settings reads them back. ``val_split`` measures one clip per item of that split against
its images, before and after.

Example::

    model, log = fit_part_head(xmr.load_model("checkpoints/demo"), "data/corpus/manifest.parquet",
                               PartHeadConfig(steps=1000))
    save_checkpoint(model, "runs/part/checkpoint", part_head=log)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmr.errors import InputError


@dataclass
class PartHeadConfig:
    """How :func:`fit_part_head` draws its clips and trains (module docstring).

    Args:
        head: the part head's kind (``"linear"``, ``"mlp"``).
        clips_per_item / view_clips: clips of each training item's audio / of each audio view.
        min_seconds / max_seconds: the clips' lengths, drawn uniformly.
        steps / batch_size / lr / weight_decay: AdamW on a one-cycle schedule.
        temperature: of the InfoNCE over all the targets.
        text_weight: weight of the clip-to-caption term beside the clip-to-image one (0 = none).
        seed: of the clips and the batches.
        val_split: the split measured before and after (``None``: none).
    """

    head: str = "linear"
    clips_per_item: int = 4
    view_clips: int = 1
    min_seconds: float = 3.0
    max_seconds: float = 6.0
    steps: int = 1000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.05
    temperature: float = 0.05
    text_weight: float = 0.0
    seed: int = 0
    val_split: str | None = "val"

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> PartHeadConfig:
        """The defaults with ``key=value`` settings (``--set steps=2000``); an unknown key raises
        :class:`~xmr.errors.ConfigError`."""
        from xmr.config import strict_from_dict
        from xmr.train.config import apply_overrides

        return strict_from_dict(cls, apply_overrides({}, list(overrides)), what="part head config")

    def draw_key(self) -> str:
        """The settings that make the clips (their features' cache name)."""
        keep = ("clips_per_item", "view_clips", "min_seconds", "max_seconds", "seed")
        return json.dumps({k: getattr(self, k) for k in keep}, sort_keys=True)


def _rng(seed: int, *key: Any) -> np.random.Generator:
    digest = hashlib.blake2b(json.dumps([seed, *key]).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def draw_clips(wave: np.ndarray, sample_rate: int, bars: dict | None, n: int, seconds: tuple[float, float],
               rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` clips of ``wave``, each of a length drawn uniformly from ``seconds`` at a uniform offset
    within the bars (from the first bar's onset to the last bar's end; the whole wave without an
    alignment); a wave shorter than a clip gives itself."""
    lo = float(bars["bar_onsets"][0]) if bars is not None else 0.0
    end = len(wave) / sample_rate
    if bars is not None:
        end = min(float(bars["bar_ends"][-1]), end)
    out = []
    for _ in range(n):
        length = float(rng.uniform(*seconds))
        t0 = float(rng.uniform(lo, max(end - length, lo)))
        i0 = int(round(t0 * sample_rate))
        out.append(wave[i0:i0 + int(round(length * sample_rate))])
    return out


@torch.no_grad()
def clip_features(model, waves: list[np.ndarray], *, batch_size: int = 64) -> torch.Tensor:
    """(N, F) what the audio heads read of each clip: the tower's features and profile."""
    model.eval()
    out = []
    for start in range(0, len(waves), batch_size):
        batch, lengths = model.prepare_with_lengths("audio", waves[start:start + batch_size])
        out.append(model.tower_features("audio", batch.to(model.device), lengths).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def _split_clips(model, rows, cfg: PartHeadConfig, grouped: dict, *, views: bool, n: int):
    """Clips of every row (its main audio, and its audio views when ``views``), with their row."""
    waves, owner = [], []
    for k, (_, row) in enumerate(rows.iterrows()):
        clips = _item_clips(model, row, cfg, grouped, views=views, n=n)
        waves += clips
        owner += [k] * len(clips)
    return waves, torch.tensor(owner, dtype=torch.long)


def _item_clips(model, row, cfg: PartHeadConfig, grouped: dict, *, views: bool, n: int) -> list[np.ndarray]:
    from xmr.data.manifest import bar_alignment
    from xmr.media.audio import load_audio

    sr = int(model.sample_rate)
    bars = bar_alignment(row)
    sources = [("main", row["audio"], n)]
    if views:
        sources += [(v["view"], v["path"], cfg.view_clips) for v in grouped.get(str(row["id"]), [])
                    if v.get("modality") == "audio"]
    out = []
    for name, path, count in sources:
        if count > 0:
            wave = load_audio(path, sample_rate=sr, max_seconds=None)
            out += draw_clips(wave, sr, bars, count, (cfg.min_seconds, cfg.max_seconds),
                              _rng(cfg.seed, str(row["id"]), name))
    return out


def _features_of_clips(model, rows, cfg: PartHeadConfig, grouped: dict, *, views: bool, n: int,
                       chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) tower features of :func:`_split_clips`' clips and their rows, ``chunk`` items of
    clips held at a time (the waves of every clip would not fit in memory)."""
    feats, owner = [], []
    for start in range(0, len(rows), chunk):
        waves, rows_of = _split_clips(model, rows.iloc[start:start + chunk], cfg, grouped, views=views, n=n)
        feats.append(clip_features(model, waves))
        owner.append(rows_of + start)
    return torch.cat(feats), torch.cat(owner)


def _ranks(queries: torch.Tensor, targets: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    scores = queries @ targets.T
    own = scores[torch.arange(len(truth)), truth]
    return ((scores > own[:, None]).sum(1) + 1).numpy()


def _measure(head: nn.Module, feats: torch.Tensor, targets: torch.Tensor, truth: torch.Tensor) -> dict:
    with torch.no_grad():
        ranks = _ranks(nn.functional.normalize(head(feats), dim=-1), targets, truth)
    return {"top-10": float((ranks <= 10).mean()), "MRR": float((1.0 / ranks).mean())}


def with_part_head(model, kind: str):
    """A copy of ``model`` with an (untrained) part head of ``kind`` on its audio tower."""
    from xmr.models.model import XmrModel

    new = XmrModel(model.config.with_overrides(**{"audio.part_head": kind})).to(model.device)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("part_heads.") for k in missing):
        raise InputError("with_part_head: the model's weights do not fit its own config")
    if kind == model.config.audio.head:
        with contextlib.suppress(RuntimeError):  # the audio head's weights, where of the same shape
            new.part_heads["audio"].load_state_dict(model.heads["audio"].state_dict())
    return new


def fit_part_head(model, manifest: str | Path, cfg: PartHeadConfig | None = None, *,
                  cache: str | Path | None = None, progress: bool = True) -> tuple[Any, dict]:
    """Fit the part head of ``model`` (module docstring); returns the model with it and a log
    (the config, the clips, the losses and the ``val_split`` measures before and after)."""
    from xmr.data.manifest import group_views, read_manifest, read_views
    from xmr.models.config import PART_SECONDS

    cfg = cfg or PartHeadConfig()
    if "audio" not in model.modalities or "image" not in model.modalities:
        raise InputError("a part head is fitted for audio queries against images: the model needs both")
    longest = min(PART_SECONDS, model.audio_window_seconds)
    if not 0 < cfg.min_seconds <= cfg.max_seconds <= longest:
        raise InputError(f"part head clips must last 0 < min_seconds <= max_seconds <= {longest:g} s (the "
                         f"clips it embeds), got {cfg.min_seconds:g}-{cfg.max_seconds:g}")
    df = read_manifest(manifest)
    usable = df["audio"].notna() & df["image"].notna()
    train_rows = df[usable & (df["split"] == "train")].sort_values("id").reset_index(drop=True)
    if not len(train_rows):
        raise InputError(f"{Path(manifest).name} has no training items with audio and an image")
    grouped = group_views(read_views(manifest))
    t0 = time.perf_counter()

    def say(text: str) -> None:
        if progress:
            print(f"part head: {text} ({time.perf_counter() - t0:.0f} s)", flush=True)

    feats_file = None
    if cache is not None:
        name = hashlib.sha1((model.fingerprint + cfg.draw_key()).encode()).hexdigest()[:12]
        feats_file = Path(cache) / f"part-clips-{name}.pt"
    if feats_file is not None and feats_file.is_file():
        saved = torch.load(feats_file, weights_only=True)
        feats, owner = saved["features"], saved["owner"]
    else:
        feats, owner = _features_of_clips(model, train_rows, cfg, grouped, views=True, n=cfg.clips_per_item)
        if feats_file is not None:
            from xmr.train.adapter import save_atomic

            feats_file.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({"features": feats, "owner": owner}, feats_file)
    image_t = torch.from_numpy(model.encode("image", list(train_rows["image"])))
    text_t = (torch.from_numpy(model.encode("text", [(list(c) or [""])[0] for c in train_rows["caption"]]))
              if cfg.text_weight > 0 else None)
    say(f"features of {len(feats)} clips of {len(train_rows)} training items, and their targets")

    val = None
    if cfg.val_split:
        rows = df[usable & (df["split"] == cfg.val_split)].sort_values("id").reset_index(drop=True)
        if len(rows):
            clips, truth = _features_of_clips(model, rows, cfg, grouped, views=False, n=1)
            val = (clips, torch.from_numpy(model.encode("image", list(rows["image"]))), truth)

    model = with_part_head(model, cfg.head)
    head = model.part_heads["audio"]
    head.train()
    before = _measure(model.heads["audio"], *val) if val is not None else None
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for step in range(cfg.steps):
        rows_ = torch.randint(0, len(feats), (cfg.batch_size,), generator=gen)
        z = nn.functional.normalize(head(feats[rows_].to(model.device)), dim=-1).cpu()
        truth = owner[rows_]
        loss = nn.functional.cross_entropy(z @ image_t.T / cfg.temperature, truth)
        if text_t is not None:
            loss = loss + cfg.text_weight * nn.functional.cross_entropy(z @ text_t.T / cfg.temperature, truth)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step + 1) % max(cfg.steps // 10, 1) == 0:
            say(f"step {step + 1}/{cfg.steps}, loss {np.mean(losses[-50:]):.3f}")
    head.eval()
    after = _measure(head, *val) if val is not None else None
    if val is not None:
        say(f"{cfg.val_split} clips ({len(val[2])}) in the top 10: {before['top-10']:.1%} with the audio "
            f"head, {after['top-10']:.1%} with the part head")
    log = {"config": asdict(cfg), "clips": int(len(feats)), "items": int(len(train_rows)),
           "seconds": round(time.perf_counter() - t0, 1),
           "loss": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
           "val": None if val is None else {"split": cfg.val_split, "clips": int(len(val[2])),
                                            "candidates": int(len(val[1])), "audio head": before,
                                            "part head": after}}
    return model, log


def fit_checkpoint(checkpoint: str | Path, manifest: str | Path, out: str | Path,
                   cfg: PartHeadConfig | None = None, *, cache: str | Path | None = None,
                   progress: bool = True) -> tuple[Path, dict]:
    """:func:`fit_part_head` on a checkpoint folder, saved as the checkpoint ``out``: the source's
    records (training config, metrics) kept, the fit's log added as ``part_head``. Returns the
    folder and the log."""
    import xmr
    from xmr.models.checkpoint import RESERVED_KEYS, read_checkpoint_config, save_checkpoint

    kept = {k: v for k, v in read_checkpoint_config(checkpoint).items() if k not in RESERVED_KEYS}
    model, log = fit_part_head(xmr.load_model(checkpoint), manifest, cfg, cache=cache, progress=progress)
    return save_checkpoint(model, out, **{**kept, "part_head": log}), log
