"""Index store on synthetic vectors: ANN vs exact search, filters, incremental add, files, fingerprints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xmr.errors import CheckpointMismatchError, InputError
from xmr.index import IndexStore
from xmr.index import store as store_mod
from xmr.index.ann import (
    build_index,
    choose_factory,
    exact_knn,
    normalize,
    parse_size,
    recall_at_k,
    search_index,
    tune_search_params,
)

DIM = 32


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    # OpenMP threads spin-wait; on a small shared CPU one thread is much faster for tiny indexes.
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def paired(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered "audio" vectors and their "text" partners (noisy, shifted by a modality gap)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, DIM)).astype(np.float32) * 1.0
    a = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, DIM)).astype(np.float32)
    gap = np.full(DIM, 0.15, np.float32)
    t = normalize(a) + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM) + gap
    return normalize(a), normalize(t)


def meta(n: int, prefix: str = "item") -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"{prefix}{i:05d}" for i in range(n)],
        "split": ["test" if i % 3 == 0 else "train" for i in range(n)],
        "collection": [f"c{i % 4}" for i in range(n)],
        "caption": [[f"caption {i}", f"other {i}"] for i in range(n)],
    })


def test_choose_factory_and_sizes():
    assert choose_factory(10_000, 256) == "Flat"
    assert choose_factory(200_000, 256).startswith("IVF") and choose_factory(200_000, 256).endswith(",Flat")
    assert "PQ" in choose_factory(10_000_000, 256)
    # a budget smaller than the float32 vectors forces compression, without the exact refine stage
    small = choose_factory(1_000_000, 256, memory_budget="200M")
    assert small.startswith("OPQ") and "PQ" in small and "RFlat" not in small
    assert parse_size("2G") == 2 << 30 and parse_size("512M") == 512 << 20 and parse_size(1000) == 1000
    with pytest.raises(InputError):
        parse_size("lots")


@pytest.mark.parametrize("factory", ["IVF64,Flat", "HNSW16", "IVF32,PQ8x4,RFlat"])
def test_ann_recall_against_exact_on_cross_modal_queries(factory):
    audio, text = paired(6000)
    store = IndexStore.build({"audio": audio[:5000], "text": text[:5000]},
                             {"audio": meta(5000), "text": meta(5000)},
                             fingerprint="fp", factory=factory, target_recall=0.95, max_tuning_queries=400)
    info = store.info["audio"]
    assert info["factory"] == factory and info["recall_queries"] == "text"
    assert info["recall"] >= 0.95
    # held-out cross-modal queries (texts of items not in the index) against exact search
    queries = text[5000:5400]
    truth = exact_knn(audio[:5000], queries, 10)[1]
    _, found = store.search_rows("audio", queries, 10)
    assert recall_at_k(found, truth, 10) >= info["recall"] - 0.03
    # and the parameters matter: the cheapest setting is worse than the tuned one
    if "nprobe" in info["search_params"]:
        _, cheap = store.search_rows("audio", queries, 10, params={**info["search_params"], "nprobe": 1})
        assert recall_at_k(cheap, truth, 10) < recall_at_k(found, truth, 10)


def test_tuning_returns_best_when_target_unreachable():
    audio, text = paired(3000, seed=1)
    index = build_index(audio, "IVF16,PQ4x4")  # 2-byte codes of 32-d vectors cannot reach 0.999
    truth = exact_knn(audio, text[:200], 10)[1]
    params, recall = tune_search_params(index, text[:200], truth, k=10, target_recall=0.999)
    assert recall < 0.999 and params["nprobe"] >= 1
    _, found = search_index(index, text[:200], 10, params)
    assert recall_at_k(found, truth, 10) == pytest.approx(recall)


def test_exact_store_matches_brute_force_and_filters():
    audio, text = paired(2000, seed=2)
    m = meta(2000)
    store = IndexStore.build({"audio": audio}, {"audio": m}, fingerprint="fp")
    assert store.info["audio"]["factory"] == "Flat" and store.info["audio"]["recall"] == 1.0
    assert store.info["audio"]["recall_queries"] == "shifted held-out"
    q = text[:5]
    hits = store.search(q, targets=("audio",), k=7)
    scores = q @ audio.T
    for qi, row in enumerate(hits):
        order = np.argsort(-scores[qi], kind="stable")[:7]
        assert [h.item_id for h in row] == [m["id"][i] for i in order]
        assert [h.rank for h in row] == list(range(1, 8))
        np.testing.assert_allclose([h.score for h in row], scores[qi, order], rtol=1e-5, atol=1e-5)
    filters = {"split": "test", "collection": ["c0", "c2"]}
    keep = np.flatnonzero((m["split"] == "test") & m["collection"].isin(["c0", "c2"]))
    hits = store.search(q, targets=("audio",), k=5, filters=filters)
    for qi, row in enumerate(hits):
        order = keep[np.argsort(-scores[qi, keep], kind="stable")[:5]]
        assert [h.item_id for h in row] == [m["id"][i] for i in order]
        assert all(h.metadata["split"] == "test" and h.metadata["collection"] in ("c0", "c2") for h in row)
    with pytest.raises(InputError, match="genre"):
        store.search(q, targets=("audio",), filters={"genre": "reel"})
    assert store.search(q[:1], targets=("audio",), filters={"split": "nope"}) == [[]]


def test_filtered_ann_search_uses_selector_and_keeps_recall(monkeypatch):
    audio, text = paired(6000, seed=3)
    m = meta(6000)
    store = IndexStore.build({"audio": audio, "text": text}, {"audio": m, "text": m}, fingerprint="fp",
                             factory="IVF64,Flat", max_tuning_queries=300)
    monkeypatch.setattr(store_mod, "EXACT_FILTER_ROWS", 0)  # force the FAISS IDSelector path
    keep = np.flatnonzero(m["collection"].isin(["c1", "c3"]))
    q = text[:300]
    truth = keep[exact_knn(audio[keep], q, 10)[1]]
    hits = store.search(q, targets=("audio",), k=10, filters={"collection": ["c1", "c3"]})
    found = np.array([[int(h.item_id[4:]) for h in row] for row in hits])
    assert set(found.ravel()) <= set(keep)
    assert recall_at_k(found, truth, 10) >= 0.9


def test_incremental_add_equals_rebuild(tmp_path):
    audio, text = paired(3000, seed=4)
    m = meta(3000)
    full = IndexStore.build({"audio": audio}, {"audio": m}, fingerprint="fp")
    part = IndexStore.build({"audio": audio[:1000]}, {"audio": m[:1000]}, fingerprint="fp")
    part.save(tmp_path / "idx")
    loaded = IndexStore.load(tmp_path / "idx", fingerprint="fp")  # memory-mapped, read-only
    loaded.add("audio", audio[1000:], m[1000:])
    for store in (loaded, IndexStore.load(loaded.save(tmp_path / "idx2"))):
        a = store.search(text[:20], targets=("audio",), k=10)
        b = full.search(text[:20], targets=("audio",), k=10)
        assert [[h.item_id for h in r] for r in a] == [[h.item_id for h in r] for r in b]
        assert store.count("audio") == 3000 and store.info["audio"]["count"] == 3000

    # an IVF index keeps its training: adding in two steps gives the same index as adding at once
    ivf = IndexStore.build({"audio": audio[:2000]}, {"audio": m[:2000]}, fingerprint="fp",
                           factory="IVF32,Flat")
    import faiss

    ref = faiss.clone_index(ivf._indexes["audio"])
    ref.reset()
    ref.add(audio)
    ivf.add("audio", audio[2000:], m[2000:])
    params = ivf.info["audio"]["search_params"]
    s1, l1 = search_index(ref, text[:50], 10, params)
    s2, l2 = ivf.search_rows("audio", text[:50], 10)
    np.testing.assert_array_equal(l1, l2)
    with pytest.raises(InputError, match="already"):
        ivf.add("audio", audio[:1], m[:1])
    # the same through files: a memory-mapped IVF index grows after load and keeps its parameters
    ivf2 = IndexStore.build({"audio": audio[:2000]}, {"audio": m[:2000]}, fingerprint="fp",
                            factory="IVF32,Flat")
    ivf2.save(tmp_path / "ivf")
    back = IndexStore.load(tmp_path / "ivf")
    back.add("audio", audio[2000:], m[2000:])
    assert back.info["audio"]["search_params"] == ivf2.info["audio"]["search_params"]
    np.testing.assert_array_equal(back.search_rows("audio", text[:50], 10)[1],
                                  search_index(ref, text[:50], 10, ivf2.info["audio"]["search_params"])[1])


def test_mismatched_fingerprint_is_refused(tmp_path):
    audio, text = paired(500, seed=5)
    IndexStore.build({"audio": audio, "text": text}, {"audio": meta(500), "text": meta(500)},
                     fingerprint="ckpt-aaaa").save(tmp_path)
    with pytest.raises(CheckpointMismatchError) as err:
        IndexStore.load(tmp_path, fingerprint="ckpt-bbbb")
    assert "ckpt-aaaa" in str(err.value) and "ckpt-bbbb" in str(err.value)
    store = IndexStore.load(tmp_path, fingerprint="ckpt-aaaa")
    assert store.modalities == ["audio", "text"] and store.fingerprint == "ckpt-aaaa"
    vecs, ids = store.vectors("audio")
    np.testing.assert_allclose(vecs, audio, atol=1e-6)
    assert ids[:2] == ["item00000", "item00001"]


def test_text_rows_collapse_to_distinct_items():
    rng = np.random.default_rng(6)
    base = normalize(rng.standard_normal((40, DIM)).astype(np.float32))
    # three captions per item, all near the item's vector
    text = normalize(np.repeat(base, 3, axis=0) + 0.05 * rng.standard_normal((120, DIM)).astype(np.float32))
    rows = pd.DataFrame({"id": np.repeat([f"i{i}" for i in range(40)], 3),
                         "caption": [f"cap {i}" for i in range(120)]})
    store = IndexStore.build({"text": text}, {"text": rows}, fingerprint="fp")
    hits = store.search(base[:3], targets=("text",), k=5)[0]
    assert len(hits) == 5 and len({h.item_id for h in hits}) == 5
    assert hits[0].item_id == "i0" and hits[0].caption.startswith("cap ")
    assert hits[0].modality == "text"


def test_scalar_quantizer_trains_on_a_real_sample():
    # A scalar quantizer trained on a single vector decodes every code to that vector (recall ~0).
    import numpy as np

    from xmr.index.ann import build_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 32)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:50] + 0.05 * rng.standard_normal((50, 32)).astype("float32")
    index = build_index(x, "SQ8")
    _, got = index.search(q, 10)
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact, strict=True)])
    assert recall > 0.9
