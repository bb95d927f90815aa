"""retrieval_metrics against trec_eval (pytrec_eval), chunking, chance values, TREC files."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from xmr.errors import InputError
from xmr.eval import metrics as M
from xmr.eval.metrics import ScoreRows, per_query_metrics, retrieval_metrics
from xmr.eval.trec import (
    evaluate_qrels,
    judged_at,
    qrels_from_relevance,
    read_qrels,
    read_run,
    run_from_scores,
    tie_docnos,
    write_qrels,
    write_run,
)

KS = (1, 3, 5, 10, 20)


def _random_case(rng, i):
    """A random (scores, relevance) pair; the case index cycles through the shapes that matter."""
    kind = i % 6
    q = int(rng.integers(1, 7))
    n = int(rng.integers(1, 40)) if kind != 5 else int(rng.integers(60, 120))
    if i % 3 == 0:  # heavy ties: few distinct score values
        scores = rng.integers(0, 4, size=(q, n)).astype(np.float64)
    elif i % 3 == 1:
        scores = rng.random((q, n)).astype(np.float32)
    else:
        scores = np.round(rng.normal(size=(q, n)), 1)
    if kind == 0:  # exactly one relevant item per query
        rel = np.zeros((q, n), dtype=bool)
        rel[np.arange(q), rng.integers(0, n, size=q)] = True
    elif kind == 1:  # several relevant items
        rel = rng.random((q, n)) < 0.3
    elif kind == 2:  # graded labels 0..3
        rel = rng.integers(0, 4, size=(q, n)) * (rng.random((q, n)) < 0.4)
    elif kind == 3:  # graded, one strong item plus weaker ones
        rel = (rng.random((q, n)) < 0.2).astype(np.int64)
        rel[np.arange(q), rng.integers(0, n, size=q)] = 3
    elif kind == 4:  # sparse relevance, some queries without any relevant item
        rel = rng.random((q, n)) < 0.05
    else:  # many relevant per row (the argsort path)
        rel = rng.random((q, n)) < 0.7
    return scores, rel


def _trec_values(scores, rel):
    qids = [f"q{i}" for i in range(scores.shape[0])]
    docnos = tie_docnos(scores.shape[1])
    qrels = qrels_from_relevance(rel.astype(np.int64), qids, docnos)
    run = run_from_scores(scores, qids, docnos)
    measures = ["recip_rank", "map", "map_cut_10", "iprec_at_recall"]
    measures += [f"{m}_{k}" for k in KS for m in ("success", "recall", "P", "ndcg_cut")]
    return qids, evaluate_qrels(qrels, run, measures)


@pytest.mark.parametrize("seed", range(4))
def test_equals_trec_eval_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n_checked = 0
    for i in range(40):  # 4 x 40 = 160 cases
        scores, rel = _random_case(rng, i)
        pq = per_query_metrics(scores, rel, ks=KS)
        qids, ref = _trec_values(scores, rel)
        assert set(ref) == {qids[j] for j in np.nonzero(pq.valid)[0]}
        for j, qid in enumerate(qids):
            if qid not in ref:
                assert pq.first_rank[j] == 0 and np.isnan(pq.rr[j])
                continue
            t = ref[qid]
            got = {"recip_rank": pq.rr[j], "map": pq.ap[j], "map_cut_10": pq.ap10[j]}
            for k in KS:
                got[f"success_{k}"] = pq.hit[k][j]
                got[f"recall_{k}"] = pq.recall[k][j]
                got[f"P_{k}"] = pq.precision[k][j]
                got[f"ndcg_cut_{k}"] = pq.ndcg[k][j]
            for li, level in enumerate(M.RECALL_LEVELS):
                got[f"iprec_at_recall_{level:.2f}"] = pq.iprec[j, li]
            for name, value in got.items():
                assert value == pytest.approx(t[name], abs=1e-9), (i, qid, name)
            n_checked += 1
        if ref:
            summary = retrieval_metrics(scores, rel, ks=KS)
            valid = [q for q in qids if q in ref]
            assert summary["MRR"] == pytest.approx(np.mean([ref[q]["recip_rank"] for q in valid]), abs=1e-9)
            assert summary["R@5"] == pytest.approx(np.mean([ref[q]["success_5"] for q in valid]), abs=1e-9)
            assert summary["n_queries"] == len(valid)
    assert n_checked > 100


def test_ranks_follow_index_ascending_ties():
    scores = np.array([[0.5, 0.5, 0.5, 0.9]])
    rel = np.array([[False, True, True, False]])
    pq = per_query_metrics(scores, rel)
    assert pq.first_rank.tolist() == [3]  # item 3 (0.9), then item 0, then item 1
    m = retrieval_metrics(scores, rel, ks=(1, 2, 3))
    assert m["MedR"] == 3 and m["MeanR"] == 3
    assert m["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def _assert_same(a: M.PerQuery, b: M.PerQuery):
    np.testing.assert_array_equal(a.first_rank, b.first_rank)
    np.testing.assert_array_equal(a.n_relevant, b.n_relevant)
    for name in ("rr", "ap", "ap10", "iprec", "gain_sum"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
    for name in ("hit", "recall", "precision", "ndcg", "idcg"):
        for k in a.ks:
            np.testing.assert_allclose(getattr(a, name)[k], getattr(b, name)[k], rtol=0, atol=1e-12)


def test_chunked_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(7)
    q, n = 37, 90
    scores = np.round(rng.normal(size=(q, n)), 1).astype(np.float32)
    rel = rng.integers(0, 3, size=(q, n)) * (rng.random((q, n)) < 0.15)
    rel[:5] = rng.integers(1, 3, size=(5, n))  # a few rows past the argsort threshold
    rel[5] = 0  # and a row without relevant items
    full = per_query_metrics(scores, rel, ks=KS, chunk_size=q)
    for chunk in (1, 4, 10):
        _assert_same(per_query_metrics(scores, rel, ks=KS, chunk_size=chunk), full)
    _assert_same(per_query_metrics(scores, sp.csr_matrix(rel), ks=KS, chunk_size=6), full)
    _assert_same(per_query_metrics(scores, lambda a, b: rel[a:b], ks=KS, chunk_size=8), full)
    # The comparison path and the argsort path agree row for row.
    monkeypatch.setattr(M, "_SORT_THRESHOLD", 0)
    _assert_same(per_query_metrics(scores, rel, ks=KS, chunk_size=5), full)
    monkeypatch.setattr(M, "_SORT_THRESHOLD", 10**9)
    _assert_same(per_query_metrics(scores, rel, ks=KS, chunk_size=5), full)


def test_score_rows_equals_matrix():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(25, 8)), rng.normal(size=(30, 8))
    rel = rng.random((25, 30)) < 0.1
    rel[np.arange(25), np.arange(25)] = True
    _assert_same(per_query_metrics(ScoreRows(a, b), rel, chunk_size=7), per_query_metrics(a @ b.T, rel))


@pytest.mark.parametrize("n_rel", [1, 2, 3])
def test_chance_equals_mean_over_all_permutations(n_rel):
    n = 5
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.float64)  # every ranking
    grades = np.array([3, 1, 2, 0, 0])
    rel = np.zeros(n, dtype=np.int64)
    rel[:n_rel] = grades[:n_rel]
    rel = np.broadcast_to(rel, perms.shape)
    m = retrieval_metrics(perms, rel, ks=(1, 2, 3, 5, 10))
    for key, value in m["chance"].items():
        if key != "MedR":
            assert value == pytest.approx(m[key], abs=1e-12), key
    # Uniform first-relevant rank for one relevant item: the median of 1..5 is 3.
    if n_rel == 1:
        assert m["chance"]["MedR"] == 3 == m["MedR"]


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 2), dtype=bool))
    with pytest.raises(InputError):
        retrieval_metrics(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
    with pytest.raises(InputError):
        retrieval_metrics(np.zeros((1, 2)), np.array([[-1, 1]]))
    with pytest.raises(InputError):
        retrieval_metrics(np.zeros((1, 2)), np.zeros((1, 2), dtype=bool))  # nothing relevant
    with pytest.raises(InputError):
        retrieval_metrics(np.zeros((1, 2)), np.array([[True, False]]), ks=(0,))


def test_trec_files_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.random((3, 6)).astype(np.float32)
    qids, docnos = ["a", "b", "c"], tie_docnos(6, prefix="image:")
    run = run_from_scores(scores, qids, docnos)
    qrels = {"a": {docnos[0]: 2, docnos[3]: 0}, "b": {docnos[5]: 1}}
    assert read_run(write_run(run, tmp_path / "x.run")) == run
    assert read_qrels(write_qrels(qrels, tmp_path / "x.qrels")) == qrels
    lines = (tmp_path / "x.run").read_text().splitlines()
    assert lines[0].split()[:4] == ["a", "Q0", docnos[int(np.argmax(scores[0]))], "1"]
    assert judged_at(qrels, run, k=10) == {"a": 2, "b": 1, "c": 0}
    assert judged_at(qrels, run_from_scores(scores, qids, docnos, depth=1), k=10)["a"] <= 1
    (tmp_path / "bad.qrels").write_text("q 0 d\n")
    with pytest.raises(InputError, match="4 fields"):
        read_qrels(tmp_path / "bad.qrels")
    with pytest.raises(InputError, match="unknown trec_eval measure"):
        evaluate_qrels(qrels, run, ["nonsense_5"])


def test_qrels_relevance_gives_trec_eval_numbers():
    from xmr.eval.protocols import qrels_relevance

    rng = np.random.default_rng(11)
    scores = np.round(rng.random((4, 30)), 2)
    qids, docnos = ["a", "b", "c", "d"], tie_docnos(30, prefix="audio:")
    qrels = {"a": {docnos[3]: 3, docnos[7]: 1, docnos[9]: 0}, "b": {docnos[0]: 2}, "c": {docnos[1]: 0}}
    m = retrieval_metrics(scores, qrels_relevance(qrels, qids, docnos), ks=(10,))
    ref = evaluate_qrels(qrels, run_from_scores(scores, qids, docnos), ["ndcg_cut_10", "map", "recip_rank"])
    # "c" has only a grade-0 judgement and "d" none: left out of the averages (counted apart).
    assert m["n_queries"] == 2 and m["n_queries_without_relevant"] == 2
    assert m["nDCG@10"] == pytest.approx(np.mean([ref[q]["ndcg_cut_10"] for q in ("a", "b")]), abs=1e-12)
    assert m["mAP"] == pytest.approx(np.mean([ref[q]["map"] for q in ("a", "b")]), abs=1e-12)
