"""Acceptance 3: exported qrels scored by trec_eval equal the store's own evaluation; import reproduces."""

import json
import math
import random

import numpy as np
import pytest

from xmr.cli import main
from xmr.eval import evaluate_qrels
from xmr.eval.trec import read_qrels, write_run
from xmr.labels import LabelStore
from xmr.labels.evaluate import evaluate_run
from xmr.labels.export import export_labels, import_labels
from xmr.labels.schema import aggregate_grades

MEASURES = ["ndcg_cut_10", "map", "P_10", "recall_10"]


def hand_measures(docs, qrels, k=10):
    """trec_eval's measures written out, the oracle the library's scores are checked against.

    The run is ranked score descending, ties by docno descending; DCG@k = sum g_i / log2(i + 1)
    over the top k (g_i the grade, 0 when unjudged) over the same sum of the judged grades sorted
    descending; AP = sum of precision at each relevant result (grade >= 1) over the relevant count.
    """
    ranked = [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    num_rel = sum(1 for g in qrels.values() if g >= 1)
    top = ranked[:k]
    dcg = sum(max(qrels.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits, precisions = 0, 0.0
    for rank, docno in enumerate(ranked, start=1):
        if qrels.get(docno, 0) >= 1:
            hits += 1
            precisions += hits / rank
    rel_top = sum(1 for d in top if qrels.get(d, 0) >= 1)
    return {
        f"ndcg_cut_{k}": dcg / idcg if idcg > 0 else 0.0,
        "map": precisions / num_rel if num_rel else 0.0,
        f"P_{k}": rel_top / k,
        f"recall_{k}": rel_top / num_rel if num_rel else 0.0,
        f"judged_{k}": float(sum(1 for d in top if d in qrels)),
    }


@pytest.fixture
def filled(tmp_path):
    """6 queries (one an image upload), 3 annotators with gaps and disagreements, a set of 5."""
    from PIL import Image

    rng = random.Random(7)
    store = LabelStore(tmp_path / "src" / "labels.sqlite", sync=False, synchronous="NORMAL")
    img = Image.fromarray(np.full((8, 8), 200, np.uint8))
    qids = []
    for i in range(6):
        if i == 2:
            q = store.add_query(modality="image", media=img, created_by="ada", source_item_id="score-2")
        else:
            q = store.add_query(modality="text", text=f"query number {i}", created_by="bob")
        qids.append(store.get_query(q).qid)
    for qi, qid in enumerate(qids):
        for k in range(14):
            docno_mod = "audio" if k % 3 else "image"
            for annotator in ("ada", "bob", "cyd"):
                if rng.random() < 0.35:
                    continue
                grade = 0 if qi == 4 else min(3, max(0, (14 - k) // 4 + rng.choice([-1, 0, 0, 1])))
                store.record_judgement(query=qid, item_id=f"it{qi}-{k}", item_modality=docno_mod,
                                       grade=grade, annotator=annotator, model_fingerprint=f"fp{k % 2}",
                                       index_version="idx-1", note="sure" if k == 0 else None)
    # a regrade and an undo so that history and current differ
    store.record_judgement(query=qids[0], item_id="it0-1", item_modality="audio", grade=0, annotator="ada")
    store.undo(annotator="ada")
    store.create_eval_set("dev", queries=qids[:5])
    # A run: 18 results per query, scores with ties, some results never judged.
    run = {}
    for qi, qid in enumerate(qids):
        docs = {}
        for k in rng.sample(range(20), 18):
            docno = f"{'audio' if k % 3 else 'image'}:it{qi}-{k}"
            docs[docno] = round(rng.choice([0.5, 0.25, rng.random()]), 6)
        run[qid] = docs
    del run[qids[3]]  # a query of the set that the run did not answer
    yield store, run, qids
    store.close()


@pytest.mark.parametrize("aggregate", ["mean", "majority"])
def test_exported_qrels_scored_by_trec_eval_equal_the_store_evaluation(filled, tmp_path, aggregate):
    store, run, qids = filled
    written = export_labels(store, out=tmp_path / "out" / "dev.qrels", aggregate=aggregate, eval_set="dev")
    assert [p.name for p in written] == ["dev.qrels", "dev.queries.jsonl"]
    qrels = read_qrels(written[0])
    assert set(qrels) == set(qids[:5])  # only the set's queries
    assert all(docno.split(":")[0] in ("audio", "image") for docs in qrels.values() for docno in docs)
    trec = evaluate_qrels(qrels, run, MEASURES)
    ours = evaluate_run(store, run=run, eval_set="dev", aggregate=aggregate)
    assert set(trec) == set(ours.per_query) == set(qids[:5]) - {qids[3]}
    for qid in trec:
        hand = hand_measures(run[qid], qrels[qid])
        for m in MEASURES:
            assert ours.per_query[qid][m] == pytest.approx(trec[qid][m], abs=1e-12), (qid, m)
            assert ours.per_query[qid][m] == pytest.approx(hand[m], abs=1e-12), (qid, m)
        assert ours.per_query[qid]["judged_10"] == hand["judged_10"]
    assert ours.per_query[qids[4]]["map"] == 0.0  # a query judged all-irrelevant
    # judged@10 against a plain count
    for qid, docs in run.items():
        if qid in ours.per_query:
            top = sorted(docs, key=lambda d: (docs[d], d), reverse=True)[:10]
            assert ours.per_query[qid]["judged_10"] == sum(d in qrels[qid] for d in top)
    assert 0 < ours.mean["judged_10"] < 10  # the run has unjudged results in its top 10
    # the same through a TREC run file
    from_file = evaluate_run(store, run=write_run(run, tmp_path / "r.run"), eval_set="dev",
                             aggregate=aggregate)
    assert from_file.mean == pytest.approx(ours.mean)


def test_aggregation_rules():
    assert aggregate_grades([1, 2], "mean") == 2  # 1.5 rounds half up
    assert aggregate_grades([0, 1, 1], "mean") == 1  # 0.67
    assert aggregate_grades([0, 0, 1], "mean") == 0  # 0.33
    assert aggregate_grades([3, 3, 0], "majority") == 3
    assert aggregate_grades([1, 2], "majority") == 1  # tie to the lower grade


def _snapshot(store):
    judgements = sorted((j.qid, j.docno, j.annotator, j.grade, j.at, j.model_fingerprint, j.index_version,
                         j.note) for j in store.judgements())
    queries = sorted((q.qid, q.modality, q.text, q.source_item_id, q.created_by,
                      q.media_path.read_bytes() if q.media_path else None) for q in store.list_queries())
    return judgements, queries


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_import_of_a_full_export_reproduces_the_judgements(filled, tmp_path, suffix):
    store = filled[0]
    written = export_labels(store, out=tmp_path / "out" / f"all.{suffix}")
    assert (tmp_path / "out" / "all.media").is_dir()  # the image query's upload travels with it
    rows = [json.loads(line) for line in written[-1].read_text().splitlines()]
    image = next(r for r in rows if r["modality"] == "image")
    assert image["media"].startswith("all.media/") and image["source_item_id"] == "score-2"
    fresh = LabelStore(tmp_path / "dst" / "labels.sqlite", sync=False, synchronous="NORMAL")
    summary = import_labels(fresh, path=written[0], eval_set="dev")
    assert summary.queries == 6 and summary.judgements == store.count_current()
    assert _snapshot(fresh) == _snapshot(store)
    again = import_labels(fresh, path=written[0])
    assert (again.queries, again.judgements, again.skipped) == (0, 0, store.count_current())
    assert _snapshot(fresh) == _snapshot(store)
    fresh.close()


def test_per_annotator_qrels_round_trip(filled, tmp_path):
    store = filled[0]
    written = export_labels(store, out=tmp_path / "out" / "x.qrels", aggregate="per-annotator")
    names = sorted(p.name for p in written)
    assert names == ["x.ada.qrels", "x.annotators.json", "x.bob.qrels", "x.cyd.qrels", "x.queries.jsonl"]
    fresh = LabelStore(tmp_path / "dst" / "labels.sqlite", sync=False, synchronous="NORMAL")
    for p in written:
        if p.suffix == ".qrels":
            import_labels(fresh, path=p)
    for annotator in ("ada", "bob", "cyd"):
        for q in store.list_queries():
            assert fresh.current_grades(query=q.qid, annotator=annotator) == \
                store.current_grades(query=q.qid, annotator=annotator)
    # an aggregated file imports as one annotator, giving the same qrels back
    agg = export_labels(store, out=tmp_path / "out" / "mean.qrels")[0]
    other = LabelStore(tmp_path / "dst2" / "labels.sqlite", sync=False, synchronous="NORMAL")
    import_labels(other, path=agg, annotator="consensus")
    assert other.qrels() == store.qrels() and other.annotators() == ["bob", "ada", "consensus"]
    fresh.close()
    other.close()


def test_cli_export_import_agreement_evaluate(filled, tmp_path, capsys):
    store, run, _ = filled
    db = str(store.path)
    out = tmp_path / "cli" / "dev.qrels"
    assert main(["labels", "export", "--db", db, "--format", "trec", "--out", str(out), "--set", "dev"]) == 0
    assert out.is_file() and (tmp_path / "cli" / "dev.queries.jsonl").is_file()
    assert read_qrels(out) == store.qrels(eval_set="dev")
    new_db = str(tmp_path / "cli" / "new.sqlite")
    assert main(["labels", "import", "--db", new_db, str(out), "--annotator", "panel", "--set", "dev"]) == 0
    assert LabelStore(new_db, sync=False).qrels(eval_set="dev") == store.qrels(eval_set="dev")
    capsys.readouterr()
    assert main(["labels", "agreement", "--db", db, "--set", "dev", "--json", str(tmp_path / "a.json")]) == 0
    assert "Krippendorff" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text())["annotators"] == ["ada", "bob", "cyd"]
    run_file = write_run({q: list(d.items()) for q, d in run.items()}, tmp_path / "cli" / "r.run")
    assert main(["labels", "evaluate", "--db", db, "--run", str(run_file), "--set", "dev"]) == 0
    assert "ndcg_cut_10" in capsys.readouterr().out
    assert main(["labels", "sets", "--db", db]) == 0 and "dev" in capsys.readouterr().out
    assert main(["labels", "export", "--db", db, "--out", str(out), "--set", "nope"]) == 2
    assert "xmr: error: no evaluation set 'nope'" in capsys.readouterr().err
