"""Fingerprints of models: the sha256 of the model config and every weight (stored or external).

Two models share a fingerprint only if they compute the same embeddings; checkpoints and indexes
record it. This module sits below both :mod:`xmr.models.model` and :mod:`xmr.models.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from xmr.models.config import ModelConfig


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def _hash_tensors(h: Any, state: dict[str, torch.Tensor]) -> None:
    for key in sorted(state):
        t = state[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))


def split_state(model) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(stored tensors, {external prefix: tensors}) of a model's state dict."""
    prefixes = model.external_prefixes()
    stored: dict[str, torch.Tensor] = {}
    external: dict[str, dict[str, torch.Tensor]] = {p: {} for p in prefixes}
    for key, t in model.state_dict().items():
        owner = next((p for p in prefixes if key.startswith(p)), None)
        if owner is None:
            stored[key] = t
        else:
            external[owner][key] = t
    return stored, external


def external_hashes(external: dict[str, dict[str, torch.Tensor]]) -> dict[str, str]:
    """sha256 of each external prefix's tensors."""
    out = {}
    for prefix, state in external.items():
        h = hashlib.sha256()
        _hash_tensors(h, state)
        out[prefix] = h.hexdigest()
    return out


def fingerprint_from(cfg: ModelConfig, stored: dict[str, torch.Tensor], ext_hashes: dict[str, str]) -> str:
    """sha256 of a config, its stored tensors and the hashes of its external ones."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    _hash_tensors(h, stored)
    for prefix in sorted(ext_hashes):
        h.update(f"{prefix}|{ext_hashes[prefix]}".encode())
    return h.hexdigest()


def compute_fingerprint(model) -> str:
    """sha256 of the model's config and all its weights (what :func:`save_checkpoint` records)."""
    stored, external = split_state(model)
    return fingerprint_from(model.config, stored, external_hashes(external))
