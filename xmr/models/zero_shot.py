"""Zero-shot checkpoints: pretrained towers that already share a space, saved with no training.

Both towers of one family (CLAP audio + CLAP text, CLIP image + CLIP text, SigLIP image + text)
from the same source, with identity heads, share a space; every other pair of the model is
recorded as untrained, so that reports and the app can say so.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from xmr.errors import InputError
from xmr.models.checkpoint import read_checkpoint_config, save_checkpoint
from xmr.models.config import ModelConfig, TowerConfig
from xmr.models.hub import SHARED_SPACE_FAMILY
from xmr.models.registry import create_model


def _family(tower: TowerConfig) -> str | None:
    if tower.head != "identity":
        return None
    return SHARED_SPACE_FAMILY.get((tower.kind, tower.arch))


def shared_pairs(cfg: ModelConfig) -> list[tuple[str, str]]:
    """Modality pairs whose pretrained towers already share a space with no training: both towers of
    one family (CLAP audio + CLAP text, CLIP image + CLIP text, SigLIP image + text) from the same
    source, with identity heads."""
    out = []
    for a, b in combinations(cfg.modalities, 2):
        ta, tb = cfg.tower(a), cfg.tower(b)
        fa = _family(ta)
        if fa is not None and fa == _family(tb) and ta.backbone == tb.backbone:
            out.append((a, b))
    return out


def untrained_pairs(cfg: ModelConfig) -> list[tuple[str, str]]:
    """The other modality pairs of an untrained model (their similarities mean nothing yet)."""
    shared = set(shared_pairs(cfg))
    return [p for p in combinations(cfg.modalities, 2) if p not in shared]


def make_zero_shot_checkpoint(
    name_or_cfg: str | ModelConfig | dict, out: str | Path, **overrides: Any
) -> Path:
    """Save an untrained checkpoint of pretrained towers, recording which pairs share a space.

    The checkpoint's ``config.json`` gets ``zero_shot: {"shared": [[a, b], ...], "untrained": [...]}``;
    the app's Evaluate tab marks the untrained directions.

    Args:
        name_or_cfg: a registered model name (``"clap-zeroshot"``, ``"clip-zeroshot"``), a config or its dict.
        out: the checkpoint folder.
        overrides: dotted-key config overrides (``{"audio.backbone": "my/clap"}``).

    Example:
        >>> make_zero_shot_checkpoint("clap-zeroshot", "checkpoints/clap")  # doctest: +SKIP
    """
    model = create_model(name_or_cfg, **overrides)
    shared = [list(p) for p in shared_pairs(model.config)]
    untrained = [list(p) for p in untrained_pairs(model.config)]
    if not shared:
        raise InputError(
            "no two towers of this model share a space (zero-shot needs e.g. CLAP audio + CLAP "
            "text or CLIP image + CLIP text from one source, with head: identity)"
        )
    return save_checkpoint(model, out, zero_shot={"shared": shared, "untrained": untrained})


def untrained_directions(checkpoint: str | Path) -> list[str]:
    """``"a→b"`` directions a checkpoint was never trained or aligned for (empty for trained ones)."""
    try:
        zero = read_checkpoint_config(checkpoint).get("zero_shot") or {}
    except Exception:  # noqa: BLE001 - no checkpoint config: nothing to report
        return []
    out = []
    for a, b in zero.get("untrained", []):
        out += [f"{a}→{b}", f"{b}→{a}"]
    return out
