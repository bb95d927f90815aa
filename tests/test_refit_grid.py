"""scripts/refit_grid.py: the tower features shared by head variants give the embeddings that each
model gives alone, and models with other towers never share an entry."""

from __future__ import annotations

import numpy as np
import torch
from scripts_tiny import load_script


def _script():
    return load_script("refit_grid")


def _inputs():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 5000)]
    images = [rng.integers(0, 255, (32, w), dtype=np.uint8) for w in (64, 40)]
    return waves, images, ["a jig in D", "a slow air"]


def _embed(model):
    waves, images, texts = _inputs()
    return [model.encode("audio", waves), model.encode("image", images), model.encode("text", texts)]


def test_shared_towers_match_each_model_alone(tiny_checkpoint):
    import xmr

    shared = _script().SharedTowers()
    plain = xmr.load_model(tiny_checkpoint)
    other_head = xmr.load_model(tiny_checkpoint)
    with torch.no_grad():  # another head over the same towers, as a refit variant has
        for head in other_head.heads.values():
            for p in head.parameters():
                p.add_(torch.randn_like(p) * 0.5)
    other_tower = xmr.load_model(tiny_checkpoint)
    with torch.no_grad():
        for p in other_tower.towers["image"].parameters():
            p.add_(0.3)
    expected = {"plain": _embed(plain), "head": _embed(other_head), "tower": _embed(other_tower)}

    first = shared.attach(xmr.load_model(tiny_checkpoint))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(_embed(first), expected["plain"], strict=True))
    entries = len(shared.features)
    assert entries >= 3  # audio, image and text batches cached
    shared.attach(other_head)
    got = _embed(other_head)
    assert len(shared.features) == entries  # the same towers: every feature came from the cache
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(got, expected["head"], strict=True))
    assert not np.allclose(got[0], expected["plain"][0], atol=1e-3)  # the heads differ, so do the vectors
    shared.attach(other_tower)
    got = _embed(other_tower)
    assert len(shared.features) == 2 * entries  # other tower weights: nothing shared
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(got, expected["tower"], strict=True))
