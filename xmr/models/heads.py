"""Projection heads from a tower's features to the shared D-dim space."""

from __future__ import annotations

import torch
from torch import nn

from xmr.errors import InputError


def build_head(kind: str, in_dim: int, out_dim: int, *, hidden: int = 0, dropout: float = 0.0) -> nn.Module:
    """``"linear"``: one linear map; ``"mlp"``: linear-ReLU-linear (the MLP block of Chao et al.
    2022, Sec. II-C/D); ``"identity"``: nothing (a pretrained tower's own projection is the shared
    space).

    Example:
        >>> build_head("mlp", 384, 256)(torch.zeros(2, 384)).shape  # doctest: +SKIP
        torch.Size([2, 256])
    """
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    if kind == "identity":  # a pretrained shared space (CLAP, CLIP) kept as it is
        if in_dim != out_dim:
            raise InputError(f"an identity head needs embed_dim = the tower's width ({in_dim}), "
                             f"got {out_dim}")
        return nn.Sequential(*drop, nn.Identity())
    if kind == "linear":
        return nn.Sequential(*drop, nn.Linear(in_dim, out_dim))
    if kind == "mlp":
        hidden = hidden or in_dim
        return nn.Sequential(
            *drop, nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )
    raise InputError(f"unknown projection head {kind!r} (linear, mlp, identity)")


def widen_head(head: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load into ``head`` the state of a head of the same kind that read fewer inputs: its first
    linear layer's weights go to the leading columns and the new inputs start at zero weight, so
    the widened head computes what the old one did until training moves it (as Net2Net widens a
    layer without changing its function; Chen et al., ICLR 2016)."""
    first = next((name for name, mod in head.named_modules() if isinstance(mod, nn.Linear)), None)
    own = head.state_dict()
    if first is None or set(own) != set(state):
        raise InputError("widen_head: the heads are not of the same kind")
    for key, value in state.items():
        target = own[key]
        grows = value.dim() == 2 and value.shape[0] == target.shape[0] and value.shape[1] <= target.shape[1]
        if key == f"{first}.weight" and grows:
            grown = torch.zeros_like(target)
            grown[:, :value.shape[1]] = value
            own[key] = grown
        elif value.shape == target.shape:
            own[key] = value
        else:
            raise InputError(f"widen_head: {key} is {tuple(value.shape)}, "
                             f"the head needs {tuple(target.shape)}")
    head.load_state_dict(own)
