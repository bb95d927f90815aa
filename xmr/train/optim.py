"""Optimiser pieces of the trainer: AdamW parameter groups and the warm-up + cosine schedule."""

from __future__ import annotations

import math
from typing import Any

from xmr.errors import InputError


def param_groups(named_params, weight_decay: float, *, lr: float | None = None,
                 backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on norms, biases, temperatures (1-D tensors, scalars); with
    ``backbone_lr_scale`` != 1 the towers' parameters (``towers.*``) get ``lr * backbone_lr_scale``."""
    decay, no_decay, bb_decay, bb_no_decay = [], [], [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        lname = name.lower()
        flat = p.ndim < 2 or "temperature" in lname or "logit_scale" in lname or "norm" in lname
        backbone = backbone_lr_scale != 1.0 and name.startswith("towers.")
        ((bb_no_decay if backbone else no_decay) if flat else (bb_decay if backbone else decay)).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if bb_decay or bb_no_decay:
        if lr is None:
            raise InputError("param_groups: a backbone_lr_scale needs the base lr")
        low = lr * backbone_lr_scale
        groups += [{"params": bb_decay, "weight_decay": weight_decay, "lr": low},
                   {"params": bb_no_decay, "weight_decay": 0.0, "lr": low}]
    return groups


def lr_factor(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
