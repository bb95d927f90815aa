"""3CMLF curriculum: batch sets, schedule, the sampler (determinism, DDP rows, resume)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xmr.errors import InputError
from xmr.train.curriculum import (
    CurriculumBatchSampler,
    Stage,
    ancillary_embeddings,
    build_batch_set,
    default_schedule,
    mean_intra_batch_similarity,
    parse_schedule,
)


def clustered(n=240, d=16, k=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    x = centres[rng.integers(k, size=n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("data", ["clustered", "isotropic"])
def test_easy_is_less_similar_than_random_and_hard_more(data):
    emb = clustered() if data == "clustered" else clustered(k=240, seed=3)
    sims = {}
    for kind in ("easy", "median", "hard"):
        values = []
        for epoch in range(3):
            batches = build_batch_set(kind, emb, 16, seed=1, epoch=epoch)
            assert all(len(b) == 16 for b in batches)
            flat = sorted(i for b in batches for i in b)
            assert flat == list(range(240))  # every item exactly once per epoch
            values.append(mean_intra_batch_similarity(emb, batches))
        sims[kind] = float(np.mean(values))
    assert sims["easy"] < sims["median"] < sims["hard"], sims


def test_batch_sets_are_deterministic_and_change_per_epoch():
    emb = clustered()
    for kind in ("easy", "median", "hard"):
        a = build_batch_set(kind, emb, 16, seed=5, epoch=2)
        assert a == build_batch_set(kind, emb, 16, seed=5, epoch=2)
        assert a != build_batch_set(kind, emb, 16, seed=5, epoch=3)


def test_drop_last_keeps_items_unique():
    emb = clustered(n=250)
    for kind in ("easy", "median", "hard"):
        dropped = build_batch_set(kind, emb, 16, seed=0, epoch=0)
        flat = [i for b in dropped for i in b]
        assert len(flat) == len(set(flat)) == 240 and all(len(b) == 16 for b in dropped)
        kept = build_batch_set(kind, emb, 16, seed=0, epoch=0, drop_last=False)
        assert sorted(i for b in kept for i in b) == list(range(250))
    with pytest.raises(InputError):
        build_batch_set("medium", emb, 16)
    with pytest.raises(InputError):
        build_batch_set("easy", emb[:8], 16)


def test_schedule_as_data():
    sched = default_schedule((2, 1, 1))
    assert [(s.batches, s.epochs, s.frozen) for s in sched] == [
        ("easy", 2, ["text"]),
        ("median", 1, ["audio"]),
        ("hard", 1, []),
    ]
    parsed = parse_schedule([{"batches": "easy", "epochs": 1, "frozen": ["text"]}, {"batches": "hard"}])
    assert parsed == [Stage("easy", 1, ["text"]), Stage("hard", 1, [])]
    with pytest.raises(InputError):
        parse_schedule([{"batches": "easy", "frozen": ["video"]}])
    with pytest.raises(InputError):
        parse_schedule([])

    s = CurriculumBatchSampler(clustered(), 16, schedule=sched)
    kinds = []
    for epoch in range(6):
        s.set_epoch(epoch)
        kinds.append((s.stage().batches, tuple(s.frozen())))
    assert kinds == [
        ("easy", ("text",)),
        ("easy", ("text",)),
        ("median", ("audio",)),
        ("hard", ()),
        ("hard", ()),
        ("hard", ()),
    ]  # the last stage continues


def test_sampler_ranks_take_slices_of_the_global_batches():
    emb = clustered()
    full = CurriculumBatchSampler(emb, 16, seed=3)
    ranks = [CurriculumBatchSampler(emb, 16, seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(full) == 15
    global_batches = list(full)
    per_rank = [list(r) for r in ranks]
    assert full.epoch == 1 and ranks[0].epoch == 1
    for g, r0, r1 in zip(global_batches, *per_rank, strict=True):
        assert len(r0) == len(r1) == 8 and r0 + r1 == g
    assert sorted(i for b in global_batches for i in b) == list(range(240))
    with pytest.raises(InputError):
        CurriculumBatchSampler(emb, 16, world_size=3)


def test_sampler_resumes_exactly():
    emb = clustered()
    a = CurriculumBatchSampler(emb, 16, seed=9, schedule=default_schedule((1, 1, 1)))
    for _ in range(20):  # into the second epoch
        a.next_batch()
    state = a.state_dict()
    b = CurriculumBatchSampler(emb, 16, seed=0)
    b.load_state_dict(state)
    assert (b.epoch, b.position, b.seed) == (1, 5, 9)
    for _ in range(40):
        assert a.next_batch() == b.next_batch()


def test_ancillary_embeddings_from_arrays_and_from_a_checkpoint(tiny_checkpoint, tmp_path):
    import soundfile as sf

    x = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    e = ancillary_embeddings(x)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    both = ancillary_embeddings({"audio": x, "text": x[::-1].copy()})
    assert both.shape == (4, 3)

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.wav"
        sf.write(p, rng.standard_normal(4000).astype(np.float32) * 0.1, 8000)
        paths.append(str(p))
    manifest = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "audio": paths,
            "caption": [["a chorale"], ["a reel for fiddle"], ["a waltz"]],
        }
    )
    emb = ancillary_embeddings(tiny_checkpoint, manifest, modalities=("audio", "text"))
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    text_only = ancillary_embeddings(tiny_checkpoint, manifest, modalities=("text",))
    assert not np.allclose(emb, text_only)
    with pytest.raises(InputError):
        ancillary_embeddings(tiny_checkpoint, manifest[["id"]], modalities=("text",))
    # the same items given as a mapping of encode() inputs (waveforms and strings); None = missing
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    mapping = {"audio": waves, "text": ["a chorale", "a reel for fiddle", "a waltz"]}
    np.testing.assert_allclose(ancillary_embeddings(tiny_checkpoint, mapping), emb, atol=1e-5)
    partial = ancillary_embeddings(
        tiny_checkpoint, {"audio": [waves[0], None, waves[2]], "text": mapping["text"]}
    )
    np.testing.assert_allclose(partial[1], text_only[1], atol=1e-5)
