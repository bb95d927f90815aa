"""Hub sync: the folder CommitScheduler would upload (layout, JSONL lines, replay), without network."""

import json

import numpy as np

from xmr.labels import LabelStore
from xmr.labels.hub import JsonlSync, from_env, read_events, replay


def test_off_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("XMR_LABELS_HUB_REPO", raising=False)
    assert from_env() is None
    store = LabelStore(tmp_path / "l.sqlite")
    assert store.sync is None
    store.close()


def test_the_store_never_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XMR_LABELS_HUB_REPO", "someone/xmr-labels")  # from_env would turn sync on
    store = LabelStore(tmp_path / "l.sqlite")
    assert store.sync is None  # the sync is passed in by whoever builds the store
    store.close()


def test_folder_layout_lines_and_replay(tmp_path):
    from PIL import Image

    sync = JsonlSync(tmp_path / "hub")
    assert sync.scheduler is None  # no repo: the folder only
    store = LabelStore(tmp_path / "l.sqlite", sync=sync, synchronous="NORMAL")
    q_text = store.add_query(modality="text", text="a slow waltz", created_by="ada")
    q_img = store.add_query(modality="image", media=Image.fromarray(np.zeros((4, 4), np.uint8)))
    store.record_judgement(query=q_text, item_id="w1", item_modality="audio", grade=2, annotator="ada",
                           model_fingerprint="fp", index_version="v3", note="nice")
    store.record_judgement(query=q_text, item_id="w1", item_modality="audio", grade=3, annotator="ada")
    store.record_judgement(query=q_img, item_id="s9", item_modality="image", grade=1, annotator="bob")
    store.undo(annotator="ada")

    files = sorted(p.relative_to(tmp_path / "hub").as_posix() for p in (tmp_path / "hub").rglob("*")
                   if p.is_file())
    assert len(files) == 3
    assert files[0].startswith("data/judgements-") and files[0].endswith(".jsonl")
    assert files[1].startswith("data/queries-") and files[1].endswith(".jsonl")
    assert files[2] == f"media/{store.get_query(q_img).media_path.name}"

    queries = [json.loads(x) for x in sync.queries_file.read_text().splitlines()]
    assert [(q["event"], q["qid"], q["modality"], q["text"]) for q in queries] == [
        ("query", "q1", "text", "a slow waltz"), ("query", "q2", "image", None)]
    assert queries[1]["media"] == files[2] and queries[0]["created_by"] == "ada"
    lines = [json.loads(x) for x in sync.judgements_file.read_text().splitlines()]
    assert [(e["event"], e["qid"], e["docno"], e["annotator"], e["grade"]) for e in lines] == [
        ("judge", "q1", "audio:w1", "ada", 2), ("judge", "q1", "audio:w1", "ada", 3),
        ("judge", "q2", "image:s9", "bob", 1), ("undo", "q1", "audio:w1", "ada", 3)]
    assert lines[0]["model_fingerprint"] == "fp" and lines[0]["index_version"] == "v3"
    assert lines[0]["note"] == "nice" and lines[1]["previous_id"] == lines[0]["id"]

    # A Space that lost its disk rebuilds the store from the downloaded folder.
    assert [e["event"] for e in read_events(tmp_path / "hub")][:2] == ["query", "query"]
    fresh = LabelStore(tmp_path / "fresh.sqlite", sync=False, synchronous="NORMAL")
    assert replay(fresh, tmp_path / "hub") == 6
    for annotator in ("ada", "bob"):
        for q in ("q1", "q2"):
            assert fresh.current_grades(query=q, annotator=annotator) == \
                store.current_grades(query=q, annotator=annotator)
    assert fresh.get_query("q2").media_path.read_bytes() == store.get_query("q2").media_path.read_bytes()
    store.close()
    fresh.close()


def test_a_cut_off_line_is_skipped(tmp_path):
    sync = JsonlSync(tmp_path / "hub")
    store = LabelStore(tmp_path / "l.sqlite", sync=sync, synchronous="NORMAL")
    q = store.add_query(modality="text", text="x")
    store.record_judgement(query=q, item_id="a", item_modality="audio", grade=1, annotator="ada")
    with open(sync.judgements_file, "a") as fh:
        fh.write('{"event": "judge", "qid": "q1", "do')  # a crash in the middle of a line
    assert [e["event"] for e in read_events(tmp_path / "hub")] == ["query", "judge"]
    store.close()
