"""Projection heads from a tower's features to the shared D-dim space."""

from __future__ import annotations

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
