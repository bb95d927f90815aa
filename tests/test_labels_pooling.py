"""Pooling: depth-k union, judging orders (MTF, Thompson, rank), next_items, overlap, progress."""

import pytest

from xmr.errors import InputError
from xmr.eval.trec import ranked, read_run, write_run
from xmr.labels import LabelStore
from xmr.labels.pooling import depth_pool, judging_order


def test_depth_pool_is_the_union_of_top_k():
    runs = {
        "a": {"q1": [("audio:1", 0.9), ("audio:2", 0.8), ("audio:3", 0.7)], "q2": [("image:9", 1.0)]},
        "b": {"q1": [("audio:4", 0.5), ("audio:2", 0.9), ("audio:2", 0.1), ("audio:5", 0.2)]},
    }
    pool = depth_pool(runs, depth=2)
    assert pool["q1"]["a"] == [("audio:1", 0.9), ("audio:2", 0.8)]
    assert pool["q1"]["b"] == [("audio:2", 0.9), ("audio:4", 0.5)]  # sorted by score, repeats dropped
    assert {d for lst in pool["q1"].values() for d, _ in lst} == {"audio:1", "audio:2", "audio:4"}
    assert pool["q2"] == {"a": [("image:9", 1.0)]}
    with pytest.raises(InputError):
        depth_pool({"a": {"q": [("nomodality", 1.0)]}}, depth=3)


def test_trec_run_round_trip(tmp_path):
    run = {"q1": [("audio:b", 0.5), ("audio:a", 0.5), ("image:c", 0.9)]}
    path = write_run(run, tmp_path / "r.run", run_name="ck")
    assert path.read_text().splitlines()[0] == "q1 Q0 image:c 1 0.90000000000000002 ck"
    # ties in trec_eval's order: docno descending
    assert ranked(read_run(path)["q1"]) == [("image:c", 0.9), ("audio:b", 0.5), ("audio:a", 0.5)]
    (tmp_path / "bad.run").write_text("q1 Q0 x 1\n")
    with pytest.raises(InputError, match="6 fields"):
        read_run(tmp_path / "bad.run")


def test_mtf_order_by_hand():
    lists = [["d1", "d2", "d3"], ["e1", "d2", "e2"]]
    rel = {"d1": False, "e1": True, "e2": False, "d2": True, "d3": False}
    # run 0 first: d1 non-relevant -> run 0 drops behind; run 1: e1 relevant (stay), d2 relevant (stay),
    # e2 non-relevant -> both at priority -1, run 0 (lower index) again: d2 already seen, d3.
    assert judging_order(lists, rel, strategy="mtf") == ["d1", "e1", "d2", "e2", "d3"]
    # ungraded results are taken as relevant: the order stays on the current run
    assert judging_order(lists, {}, strategy="mtf") == ["d1", "d2", "d3", "e1", "e2"]


def test_rank_order_and_thompson_are_permutations():
    lists = [["a", "b", "c"], ["c", "d"], ["e", "a"]]
    assert judging_order(lists, {}, strategy="rank") == ["a", "c", "e", "b", "d"]
    t1 = judging_order(lists, {"a": True, "c": False}, strategy="thompson", seed=3)
    t2 = judging_order(lists, {"a": True, "c": False}, strategy="thompson", seed=3)
    assert t1 == t2 and sorted(t1) == ["a", "b", "c", "d", "e"]
    with pytest.raises(InputError):
        judging_order(lists, {}, strategy="random")


@pytest.mark.parametrize("strategy", ["mtf", "thompson"])
def test_adaptive_orders_find_relevant_results_sooner_than_rank_order(strategy):
    # A poor run listed first, a good run second (all of its results relevant): MTF leaves the poor
    # run after its first miss; plain rank order alternates between the two.
    bad = [f"bad{i}" for i in range(10)]
    good = [f"good{i}" for i in range(10)]
    rel = {d: d.startswith("good") for d in bad + good}

    def found(order, m=10):
        return sum(rel[d] for d in order[:m])

    baseline = found(judging_order([bad, good], rel, strategy="rank"))
    adaptive = [found(judging_order([bad, good], rel, strategy=strategy, seed=s)) for s in range(5)]
    assert baseline == 5
    assert min(adaptive) >= 7 if strategy == "thompson" else adaptive[0] == 9


@pytest.fixture
def pooled(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", sync=False)
    for i in range(3):
        store.add_query(modality="text", text=f"query {i}", qid=f"t{i}")
    run_a = {f"t{i}": [(f"audio:a{i}{k}", 1 - k / 10) for k in range(4)] for i in range(3)}
    run_b = {f"t{i}": [(f"audio:a{i}{k}", 1 - k / 10) for k in (3, 2)] + [(f"image:b{i}", 0.1)]
             for i in range(3)}
    write_run(run_b, tmp_path / "b.run")
    store.add_pool("p1", runs={"a": run_a, "b": tmp_path / "b.run"}, depth=3, overlap=2, eval_set="dev")
    yield store
    store.close()


def test_pool_contents_and_eval_set(pooled):
    (info,) = pooled.list_pools()
    assert info == {"name": "p1", "depth": 3, "overlap": 2, "strategy": "mtf", "runs": ["a", "b"],
                    "queries": 3}
    prog = pooled.progress()
    # per query: a's top 3 (a?0, a?1, a?2) union b's top 3 (a?3, a?2, b?) = 5 results
    assert [q.pool_size for q in prog.queries] == [5, 5, 5]
    assert [q.qid for q in pooled.list_queries(eval_set="dev")] == ["t0", "t1", "t2"]
    with pytest.raises(InputError, match="already exists"):
        pooled.add_pool("p1", runs={"a": {"t0": [("audio:x", 1.0)]}})
    with pytest.raises(InputError, match="no query"):
        pooled.add_pool("p2", runs={"a": {"unknown": [("audio:x", 1.0)]}})


def test_next_items_never_repeats_and_respects_overlap(pooled):
    seen = []
    while True:
        batch = pooled.next_items("ada", 4)
        if not batch:
            break
        for item in batch:
            assert (item.qid, item.docno) not in seen
            seen.append((item.qid, item.docno))
            pooled.record_judgement(query=item.query_id, item_id=item.item_id,
                                    item_modality=item.item_modality, grade=1, annotator="ada")
    assert len(seen) == 15
    # bob is the second annotator of every item; carol finds nothing left once both graded (overlap 2)
    bob = pooled.next_items("bob", 100)
    assert len(bob) == 15 and all(i.n_annotators == 1 for i in bob)
    for item in bob[:6]:
        pooled.record_judgement(query=item.query_id, item_id=item.item_id,
                                item_modality=item.item_modality, grade=2, annotator="bob")
    carol = pooled.next_items("carol", 100)
    assert {(i.qid, i.docno) for i in carol} == {(i.qid, i.docno) for i in bob[6:]}
    prog = {a.annotator: a for a in pooled.progress().annotators}
    assert (prog["ada"].judged, prog["ada"].remaining) == (15, 0)
    assert (prog["bob"].judged, prog["bob"].remaining) == (6, 9)
    assert "carol" not in prog  # asking for work does not register an annotator
    assert sum(q.complete_items for q in pooled.progress().queries) == 6


def test_next_items_finishes_a_started_query_first(pooled):
    first = pooled.next_items("ada", 1)[0]
    pooled.record_judgement(query=first.query_id, item_id=first.item_id, item_modality=first.item_modality,
                            grade=0, annotator="ada")
    batch = pooled.next_items("ada", 4)
    assert {i.qid for i in batch} == {first.qid}
    only = pooled.next_items("ada", 10, query="t1" if first.qid != "t1" else "t2")
    assert len({i.qid for i in only}) == 1 and len(only) == 5


def test_pool_items_lists_graded_and_ungraded_results(pooled):
    first = pooled.next_items("ada", 1)[0]
    pooled.record_judgement(query=first.query_id, item_id=first.item_id, item_modality=first.item_modality,
                            grade=3, annotator="ada")
    items = pooled.pool_items(query=first.qid)
    assert len(items) == 5 and items[0].docno == first.docno and items[0].n_annotators == 1
    assert {i.docno for i in items[1:]} == {i.docno for i in pooled.next_items("ada", 10, query=first.qid)}
    assert pooled.current_grades(query=first.qid, annotator="ada") == {first.docno: 3}
