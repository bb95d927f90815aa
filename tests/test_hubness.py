"""Hubness offsets (xmr.index.hubness): the offsets against a plain NumPy reference, the store's
corrected search against brute-force ranking, and ``xmr index hubness`` on a real tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xmr.index.ann import normalize
from xmr.index.hubness import row_offsets
from xmr.index.store import IndexStore


def _unit(rng, n, d=16):
    return normalize(rng.standard_normal((n, d)).astype(np.float32))


def _reference_offsets(x, bank, bank_ids, k, row_ids=None):
    sims = x @ bank.T
    r = []
    for i in range(len(x)):
        s = sims[i] if row_ids is None else sims[i][np.asarray(bank_ids) != row_ids[i]]
        r.append(np.sort(s)[-k:].mean())
    r = np.asarray(r)
    return r - r.mean()


def test_row_offsets_match_a_plain_reference_and_leave_out_the_rows_own_item():
    rng = np.random.default_rng(0)
    x, bank = _unit(rng, 40), _unit(rng, 90)
    bank_ids = [f"b{i // 3}" for i in range(90)]  # three queries per bank item
    np.testing.assert_allclose(row_offsets(x, bank, bank_ids, k=7), _reference_offsets(x, bank, bank_ids, 7),
                               atol=1e-5)
    # rows that are bank items: their own item's queries (here nearly the row itself) do not count
    row_ids = [f"b{i}" for i in range(40)]
    near = bank.copy()
    near[0::3][:30] = x[:30]  # item bi's first query is row i's own vector
    got = row_offsets(x, near, bank_ids, k=5, row_ids=row_ids)
    np.testing.assert_allclose(got, _reference_offsets(x, near, bank_ids, 5, row_ids), atol=1e-5)
    assert abs(float(got.mean())) < 1e-6
    with_own = row_offsets(x, near, bank_ids, k=5)
    assert not np.allclose(got, with_own, atol=1e-3)  # counting the own item would change them


def _store(rng, *, factory="Flat"):
    audio = _unit(rng, 60)
    text = _unit(rng, 150)  # several rows per item
    text_ids = [f"i{i % 60}" for i in range(150)]
    meta = {"audio": pd.DataFrame({"id": [f"i{i}" for i in range(60)], "caption": "",
                                   "split": ["a" if i % 2 else "b" for i in range(60)]}),
            "text": pd.DataFrame({"id": text_ids, "caption": [f"c{i}" for i in range(150)],
                                  "split": ["a" if int(t[1:]) % 2 else "b" for t in text_ids]})}
    store = IndexStore.build({"audio": audio, "text": text}, meta, fingerprint="f", factory=factory)
    return store, audio, text


def _brute(vectors, ids, offsets, beta, q, k, keep=None):
    scores = vectors @ q - beta * offsets
    best: dict[str, float] = {}
    for i in np.argsort(-scores, kind="stable"):
        if keep is not None and not keep[i]:
            continue
        best.setdefault(ids[i], float(scores[i]))
    return list(best.items())[:k]


@pytest.mark.parametrize("name", ["audio", "text"])
def test_corrected_search_equals_brute_force_ranking(name, tmp_path):
    rng = np.random.default_rng(1)
    store, audio, text = _store(rng)
    vectors = audio if name == "audio" else text
    ids = store.metadata(name)["id"].tolist()
    # wide offsets, so that the search must fetch deeper; one array per query modality
    offsets = {"image": rng.uniform(-0.6, 0.6, len(ids)).astype(np.float32),
               "text": rng.uniform(-0.6, 0.6, len(ids)).astype(np.float32)}
    store.set_offsets(name, offsets, beta=0.8, k=5)
    queries = _unit(rng, 12)
    split = store.metadata(name)["split"].to_numpy() == "a"
    fused = (0.25 * offsets["image"] + 0.5 * offsets["text"]) / 1.25  # + 0.5 audio, no offsets here
    for q in queries:
        for filters, keep in ((None, None), ({"split": "a"}, split)):
            for query, shift in (("image", offsets["image"]), ({"text": 1.0}, offsets["text"]),
                                 ({"image": -0.25, "text#2": 0.5, "audio": 0.5}, fused)):
                hits = store.search(q, targets=(name,), k=8, filters=filters, query=query)[0]
                expected = _brute(vectors, ids, shift, 0.8, q, 8, keep)
                assert [h.item_id for h in hits] == [i for i, _ in expected]
                np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    # the offsets change the ranking (else this test would show nothing); a query of a modality
    # without offsets, or none named, ranks by plain cosines
    plain = [i for i, _ in _brute(vectors, ids, np.zeros(len(ids), np.float32), 0.8, queries[0], 8)]
    assert [h.item_id for h in store.search(queries[0], targets=(name,), k=8, query="image")[0]] != plain
    for query in (None, "audio"):
        assert [h.item_id for h in store.search(queries[0], targets=(name,), k=8, query=query)[0]] == plain

    # saved and loaded: the same results; index.json records the correction
    store.save(tmp_path / "idx")
    loaded = IndexStore.load(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["indexes"][name]["hubness"] == {
        "beta": 0.8, "k": 5}
    assert [h.item_id for h in loaded.search(queries[1], targets=(name,), k=8, query="text")[0]] == [
        h.item_id for h in store.search(queries[1], targets=(name,), k=8, query="text")[0]]
    # removed: plain cosine ranking again, and the file goes with the next save
    loaded.set_offsets(name, None)
    assert [h.item_id for h in loaded.search(queries[0], targets=(name,), k=8, query="image")[0]] == plain
    loaded.save(tmp_path / "idx")
    assert not (tmp_path / "idx" / f"{name}.offsets.npz").exists()


def test_a_short_clip_is_ranked_with_the_clip_banks_offsets(tmp_path):
    from xmr.index.hubness import bank_key
    from xmr.index.query import EncodedQuery
    from xmr.models.config import PART_SECONDS

    rng = np.random.default_rng(3)
    store, _, text = _store(rng)
    ids = store.metadata("text")["id"].tolist()
    whole, part = (rng.uniform(-0.6, 0.6, len(ids)).astype(np.float32) for _ in range(2))
    store.set_offsets("text", {"audio": whole, "audio:part": part})
    store.save(tmp_path / "idx")
    store = IndexStore.load(tmp_path / "idx")
    q = _unit(rng, 1)[0]
    for query, shift in (({"audio": 1.0}, whole), ({"audio:part": 1.0}, part),
                         ({"audio:part": 1.0, "image": 1.0}, part / 2)):  # no image offsets here
        hits = store.search(q, targets=("text",), k=8, query=query)[0]
        assert [h.item_id for h in hits] == [i for i, _ in _brute(text, ids, shift, 1.0, q, 8)]
    assert [h.item_id for h in store.search(q, targets=("text",), k=8, query={"audio": 1.0})[0]] != [
        h.item_id for h in store.search(q, targets=("text",), k=8, query={"audio:part": 1.0})[0]]
    # an index without the clip bank ranks a clip with its modality's offsets
    store.set_offsets("text", {"audio": whole})
    hits = store.search(q, targets=("text",), k=8, query={"audio:part": 1.0})[0]
    assert [h.item_id for h in hits] == [i for i, _ in _brute(text, ids, whole, 1.0, q, 8)]

    # which bank a query names: a clip of at most PART_SECONDS is a part, a longer one whole
    assert bank_key("audio", PART_SECONDS) == "audio:part" and bank_key("audio", 8.0) == "audio"
    assert bank_key("image", 1.0) == "image" and bank_key("audio") == "audio"

    def query(seconds, **weights):
        return EncodedQuery(vector=q, parts={m: q for m in weights}, weights=weights, audio_seconds=seconds)

    assert query(4.0, audio=1.0, text=0.5).banks == {"audio:part": 1.0, "text": 0.5}
    assert query(30.0, audio=1.0).banks == {"audio": 1.0}
    assert query(None, audio=1.0, text=1.0).banks == {"audio": 1.0, "text": 1.0}


def test_added_rows_get_the_mean_offset_and_bad_offsets_are_refused():
    from xmr.errors import InputError

    rng = np.random.default_rng(2)
    store, audio, _ = _store(rng)
    store.set_offsets("audio", {"image": rng.uniform(-0.3, 0.3, 60).astype(np.float32)})
    new = _unit(rng, 1)
    store.add("audio", new, pd.DataFrame({"id": ["new"], "caption": [""], "split": ["a"]}))
    hit = store.search(new[0], targets=("audio",), k=1, query="image")[0][0]
    assert hit.item_id == "new" and hit.score == pytest.approx(1.0, abs=1e-5)  # offset 0
    assert store.item_shift("audio", ["new"], "image")[0] == 0.0
    with pytest.raises(InputError, match="61 rows; got 3 image offsets"):
        store.set_offsets("audio", {"image": np.zeros(3)})
    with pytest.raises(InputError, match="not finite"):
        store.set_offsets("audio", {"image": np.full(61, np.nan)})
    with pytest.raises(InputError, match="unknown query modality"):
        store.set_offsets("audio", {"video": np.zeros(61)})


def test_index_hubness_command_on_a_tiny_corpus(tiny_checkpoint, tiny_corpus, tmp_path, capsys):
    import xmr
    from xmr.cli import main
    from xmr.data.manifest import read_manifest
    from xmr.index.hubness import index_offsets, query_bank
    from xmr.index.query import encode_query

    emb, index = tmp_path / "emb", tmp_path / "index"
    assert main(["embed", "--checkpoint", str(tiny_checkpoint), "--manifest", str(tiny_corpus),
                 "--out", str(emb), "--no-progress"]) == 0
    assert main(["index", "build", "--embeddings", str(emb), "--out", str(index)]) == 0
    capsys.readouterr()
    assert main(["index", "hubness", "--index", str(index), "--manifest", str(tiny_corpus), "--split", "",
                 "-n", "6", "-k", "3", "--checkpoint", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "audio: offsets for image (12 queries of 6 items), text" in out
    assert "image: offsets for audio (12 queries of 6 items), audio:part (6 queries of 6 items), text" in out
    store = IndexStore.load(index)
    rec = store.info["image"]["hubness"]
    assert set(rec["banks"]) == {"audio", "audio:part", "text"} and rec["banks"]["audio"]["items"] == 6
    assert rec["k"] == 3
    assert "hubness" not in store.info["text"]
    # the stored offsets are those of the bank made again with the same seed
    model = xmr.load_model(tiny_checkpoint)
    rows = read_manifest(tiny_corpus)
    bank = query_bank(model, rows, n=6, seed=0, batch_size=4)  # two batches
    assert len(bank["audio"][1]) == 12  # whole + clip per item
    # the clips alone are the partial bank; each vector is what the one query path gives alone
    np.testing.assert_array_equal(bank["audio:part"][0], bank["audio"][0][1::2])
    assert bank["audio:part"][1] == bank["audio"][1][1::2]
    by_id = rows.set_index(rows["id"].astype(str))
    for n, item in enumerate(bank["audio"][1][::2]):
        alone = encode_query(model, audio=by_id.loc[item, "audio"]).vector
        np.testing.assert_allclose(bank["audio"][0][2 * n], alone, atol=1e-5)
        alone = encode_query(model, image=by_id.loc[item, "image"]).vector
        np.testing.assert_allclose(bank["image"][0][2 * n], alone, atol=1e-5)
    vectors, ids = store.vectors("image")
    expected = index_offsets(vectors, ids, "image", bank, k=3)
    with np.load(index / "image.offsets.npz") as stored:
        assert sorted(stored.files) == ["audio", "audio:part", "text"]
        for m in stored.files:
            np.testing.assert_allclose(stored[m], expected[m], atol=1e-4)
    # a search ranks by the corrected score of the query's modality, as the command line searches
    q = model.encode("audio", [np.zeros(8000, np.float32) + 0.01])[0]
    hits = store.search(q, targets=("image",), k=3, query="audio")[0]
    scores = vectors @ (q / np.linalg.norm(q)) - expected["audio"]
    assert [h.item_id for h in hits] == [ids[i] for i in np.argsort(-scores)[:3]]
