"""Query fusion and long-audio windows (synthetic signals with a known matching part)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xmr.errors import InputError
from xmr.index import IndexStore, embed_tracks, fuse_queries, pool_windows
from xmr.index.windows import window_ranges


def test_fusion_of_one_input_is_the_plain_query():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(16).astype(np.float32) * 7.0
    np.testing.assert_allclose(fuse_queries([v])[0], v / np.linalg.norm(v), rtol=1e-6)
    np.testing.assert_allclose(fuse_queries([v], [2.5])[0], v / np.linalg.norm(v), rtol=1e-6)


def test_fusion_normalises_each_input_and_allows_negative_weights():
    a = np.array([10.0, 0.0, 0.0])  # a long vector must not dominate a short one
    b = np.array([0.0, 0.1, 0.0])
    np.testing.assert_allclose(fuse_queries([a, b])[0], [2**-0.5, 2**-0.5, 0.0], rtol=1e-6)
    c = np.array([1.0, 1.0, 0.0])
    out = fuse_queries([c, b], [1.0, -0.5])[0]
    ref = c / np.linalg.norm(c) - 0.5 * np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref), rtol=1e-6)
    assert out[0] > out[1]  # the negative weight pushes away from b
    batch = fuse_queries([np.eye(3)[:2], np.eye(3)[1:]], [1.0, 1.0])
    assert batch.shape == (2, 3) and np.allclose(np.linalg.norm(batch, axis=1), 1.0)
    with pytest.raises(InputError):
        fuse_queries([a, b], [1.0])
    with pytest.raises(InputError, match="cancel"):
        fuse_queries([a, a], [1.0, -1.0])
    with pytest.raises(InputError):
        fuse_queries([])


def level_encoder(pieces):
    """A controllable 'audio tower': [share of loud samples, share of quiet samples, 0.1]."""
    out = []
    for w in pieces:
        loud = float(np.mean(np.abs(w) > 0.5))
        out.append([loud, 1.0 - loud, 0.1])
    return np.asarray(out, dtype=np.float32)


def track(seconds: float, loud_from: float, loud_to: float, sr: int = 100) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.where((t >= loud_from) & (t < loud_to), 0.9, 0.1).astype(np.float32)


def test_windows_are_fixed_overlapping_and_deterministic():
    sr = 100
    assert window_ranges(10 * sr, sample_rate=sr, window_seconds=2.0) == [
        (s, s + 200) for s in range(0, 801, 100)
    ]
    assert window_ranges(150, sample_rate=sr, window_seconds=2.0) == [(0, 150)]  # short: one window
    wave = track(10.0, 6.0, 8.0)
    a = embed_tracks(level_encoder, [wave], sample_rate=sr, window_seconds=2.0)[0]
    b = embed_tracks(level_encoder, [wave.copy()], sample_rate=sr, window_seconds=2.0)[0]
    np.testing.assert_array_equal(a.vector, b.vector)
    np.testing.assert_array_equal(a.starts, np.arange(0.0, 9.0))
    np.testing.assert_array_equal(a.ends, np.arange(2.0, 11.0))
    # the track vector is the (normalised) mean of the window vectors (Nakatsuka et al. 2023, Sec. 4.1.2)
    mean = a.windows.mean(axis=0)
    np.testing.assert_allclose(a.vector, mean / np.linalg.norm(mean), rtol=1e-6)
    np.testing.assert_allclose(pool_windows(a.windows), a.vector, rtol=1e-6)


def test_search_reports_where_in_the_track_the_match_is():
    sr = 100
    spec = {"t0": (6.0, 8.0), "t1": (2.0, 4.0), "t2": (0.0, 0.0)}  # t2 never loud
    waves = [track(10.0, *spec[i], sr=sr) for i in spec]
    tracks = embed_tracks(level_encoder, waves, sample_rate=sr, window_seconds=2.0)
    ids = list(spec)
    store = IndexStore.build(
        {"audio": np.stack([t.vector for t in tracks]),
         "audio_windows": np.concatenate([t.windows for t in tracks])},
        {"audio": pd.DataFrame({"id": ids, "caption": [f"track {i}" for i in ids]}),
         "audio_windows": pd.DataFrame({
             "id": [i for i, t in zip(ids, tracks, strict=True) for _ in t.starts],
             "start": np.concatenate([t.starts for t in tracks]),
             "end": np.concatenate([t.ends for t in tracks])})},
        fingerprint="fp")
    loud = np.array([[1.0, 0.0, 0.1]], dtype=np.float32)
    hits = store.search(loud, targets=("audio",), k=3)[0]
    where = {h.item_id: (h.start, h.end) for h in hits}
    assert where["t0"] == (6.0, 8.0) and where["t1"] == (2.0, 4.0)
    assert all(h.modality == "audio" for h in hits)
    # ranking tracks by their best window: the loud tracks first, each at its loud part
    best = store.search(loud, targets=("audio_windows",), k=3)[0]
    assert {best[0].item_id, best[1].item_id} == {"t0", "t1"} and best[2].item_id == "t2"
    assert {(h.item_id, h.start) for h in best[:2]} == {("t0", 6.0), ("t1", 2.0)}
