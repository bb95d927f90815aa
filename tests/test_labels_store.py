"""The label store: schema, pragmas, judgements with history, undo, queries with stored media, sets."""

import sqlite3

import numpy as np
import pytest

from xmr.errors import InputError, XmrError
from xmr.labels import LabelStore, make_docno, parse_docno
from xmr.labels.schema import MIGRATIONS


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite", sync=False)
    yield s
    s.close()


def test_pragmas_and_schema_version(store):
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert store.schema_version == len(MIGRATIONS) >= 1
    assert store.integrity_check() == "ok"


def test_reopen_keeps_data_and_newer_schema_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, sync=False) as s:
        q = s.add_query(modality="text", text="a reel on fiddle")
        s.record_judgement(query=q, item_id="x", item_modality="audio", grade=2, annotator="ada")
    with LabelStore(path, sync=False) as s:
        assert s.current_grades(query="q1", annotator="ada") == {"audio:x": 2}
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(XmrError, match="newer than this xmr"):
        LabelStore(path, sync=False)


def test_new_grade_replaces_and_history_is_kept(store):
    q = store.add_query(modality="text", text="organ chorale", created_by="ada")
    j1 = store.record_judgement(query=q, item_id="b1", item_modality="audio", grade=1, annotator="ada",
                                model_fingerprint="fp1", index_version="v1", note="first look")
    j2 = store.record_judgement(query=q, item_id="b1", item_modality="audio", grade=3, annotator="ada")
    store.record_judgement(query=q, item_id="b1", item_modality="audio", grade=0, annotator="bob")
    assert store.current_grades(query=q, annotator="ada") == {"audio:b1": 3}
    assert store.current_grades(query=q, annotator="bob") == {"audio:b1": 0}
    history = store.judgements(query=q, annotator="ada", history=True)
    assert [(j.id, j.grade, j.state, j.previous_id) for j in history] == [
        (j1, 1, "replaced", None), (j2, 3, "current", j1)]
    assert history[0].model_fingerprint == "fp1" and history[0].index_version == "v1"
    assert history[0].note == "first look"
    assert store.count_current() == 2


def test_one_current_is_enforced_by_the_database(store):
    q = store.add_query(modality="text", text="x")
    store.record_judgement(query=q, item_id="b1", item_modality="audio", grade=1, annotator="ada")
    conn = store._conn()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO judgements(query_id, item_modality, item_id, annotator_id, grade, at, "
                     "state) VALUES (1, 'audio', 'b1', 1, 2, 'now', 'current')")
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on
        conn.execute("INSERT INTO judgements(query_id, item_modality, item_id, annotator_id, grade, at) "
                     "VALUES (99, 'audio', 'b2', 1, 2, 'now')")


def test_undo_walks_back_through_the_annotators_actions(store):
    q1 = store.add_query(modality="text", text="one")
    q2 = store.add_query(modality="text", text="two")
    store.record_judgement(query=q1, item_id="a", item_modality="audio", grade=1, annotator="ada")  # r1
    store.record_judgement(query=q2, item_id="b", item_modality="image", grade=2, annotator="ada")  # r2
    store.record_judgement(query=q1, item_id="a", item_modality="audio", grade=3, annotator="ada")  # r3
    store.record_judgement(query=q1, item_id="c", item_modality="audio", grade=0, annotator="bob")
    undone = store.undo(annotator="ada")  # r3: grade 1 comes back
    assert (undone.undone.grade, undone.restored.grade) == (3, 1)
    assert store.current_grades(query=q1, annotator="ada") == {"audio:a": 1}
    undone = store.undo(annotator="ada")  # r2: b is ungraded again
    assert undone.undone.item_id == "b" and undone.restored is None
    assert store.current_grades(query=q2, annotator="ada") == {}
    assert store.undo(annotator="ada").undone.grade == 1  # r1
    assert store.undo(annotator="ada") is None
    assert store.undo(annotator="nobody") is None
    assert store.current_grades(query=q1, annotator="bob") == {"audio:c": 0}  # others untouched
    states = [j.state for j in store.judgements(annotator="ada", history=True)]
    assert states == ["undone", "undone", "undone"]


def test_undo_within_one_query(store):
    q1 = store.add_query(modality="text", text="one")
    q2 = store.add_query(modality="text", text="two")
    store.record_judgement(query=q1, item_id="a", item_modality="audio", grade=1, annotator="ada")
    store.record_judgement(query=q2, item_id="b", item_modality="audio", grade=2, annotator="ada")
    assert store.undo(annotator="ada", query=q1).undone.item_id == "a"
    assert store.current_grades(query=q2, annotator="ada") == {"audio:b": 2}


@pytest.mark.parametrize("bad", [4, -1, 1.5, "x", None, True])
def test_bad_grades_are_input_errors(store, bad):
    q = store.add_query(modality="text", text="x")
    with pytest.raises(InputError):
        store.record_judgement(query=q, item_id="a", item_modality="audio", grade=bad, annotator="ada")
    assert store.count_current() == 0


def test_bad_inputs_are_input_errors(store):
    q = store.add_query(modality="text", text="x")
    store.record_judgement(query=q, item_id="a", item_modality="audio", grade=np.int64(2), annotator="a")
    store.record_judgement(query=q, item_id="b", item_modality="audio", grade="3", annotator="a")
    cases = [
        dict(query=99, item_id="a", item_modality="audio", grade=1, annotator="a"),
        dict(query="nope", item_id="a", item_modality="audio", grade=1, annotator="a"),
        dict(query=q, item_id="a", item_modality="video", grade=1, annotator="a"),
        dict(query=q, item_id="a b", item_modality="audio", grade=1, annotator="a"),
        dict(query=q, item_id="a", item_modality="audio", grade=1, annotator="  "),
    ]
    for kw in cases:
        with pytest.raises(InputError):
            store.record_judgement(**kw)
    with pytest.raises(InputError):
        store.add_query(modality="text", text="   ")
    with pytest.raises(InputError):
        store.add_query(modality="video", text="x")
    with pytest.raises(InputError):
        store.add_query(modality="image", text="x", media=b"123")
    with pytest.raises(InputError):
        store.add_query(modality="image", media="/no/such/file.png")
    with pytest.raises(InputError):
        parse_docno("nocolon")
    assert parse_docno(make_docno("image", "a:b")) == ("image", "a:b")


def test_media_queries_are_stored_as_copies_and_deduplicated(store, tmp_path):
    from PIL import Image

    img = Image.fromarray((np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64))
    q_img = store.add_query(modality="image", media=img, created_by="ada")
    upload = tmp_path / "upload.wav"
    import soundfile as sf

    sf.write(upload, np.sin(np.linspace(0, 100, 8000)).astype(np.float32), 8000)
    q_wav = store.add_query(modality="audio", media=upload, source_item_id="bach-7")
    q_arr = store.add_query(modality="audio", media=(8000, np.zeros(800, np.float32)))
    qi, qw, qa = store.get_query(q_img), store.get_query(q_wav), store.get_query(q_arr)
    assert qi.media_path.suffix == ".png" and qi.media_path.parent.parent == store.media_dir
    assert Image.open(qi.media_path).size == (64, 48)
    assert qw.media_path.read_bytes() == upload.read_bytes() and qw.source_item_id == "bach-7"
    assert qa.media_path.suffix == ".flac" and sf.read(qa.media_path)[0].shape == (800,)
    upload.unlink()  # the store keeps its own copy
    assert qw.media_path.is_file()
    assert store.add_query(modality="image", media=img) == q_img  # same payload -> same query
    assert store.add_query(modality="text", text="a") != store.add_query(modality="text", text="b")
    assert store.get_query(q_img).created_by == "ada" and store.get_query(q_img).qid == f"q{q_img}"
    with pytest.raises(InputError, match="already names"):
        store.add_query(modality="text", text="other", qid=qi.qid)


def test_eval_sets_and_their_qrels(store):
    q1 = store.add_query(modality="text", text="one", qid="t1")
    q2 = store.add_query(modality="text", text="two", qid="t2")
    store.add_query(modality="text", text="three", qid="t3")
    store.create_eval_set("dev", queries=["t1", q2], description="first set")
    for annotator, grade in (("a", 1), ("b", 2), ("c", 2)):
        store.record_judgement(query=q1, item_id="x", item_modality="audio", grade=grade, annotator=annotator)
    store.record_judgement(query="t3", item_id="y", item_modality="image", grade=3, annotator="a")
    (dev,) = store.list_eval_sets()
    assert (dev.name, dev.n_queries, dev.n_judged_queries, dev.n_judgements) == ("dev", 2, 1, 3)
    assert store.qrels(eval_set="dev") == {"t1": {"audio:x": 2}}  # mean 5/3 rounds to 2
    assert store.qrels(eval_set="dev", aggregate="majority") == {"t1": {"audio:x": 2}}
    assert set(store.qrels()) == {"t1", "t3"}
    assert [q.qid for q in store.list_queries(eval_set="dev")] == ["t1", "t2"]
    with pytest.raises(InputError):
        store.list_queries(eval_set="nope")


def test_backup_is_a_consistent_copy(store, tmp_path):
    q = store.add_query(modality="text", text="x")
    store.record_judgement(query=q, item_id="a", item_modality="audio", grade=2, annotator="ada")
    copy = store.backup(tmp_path / "bk" / "copy.sqlite")
    with LabelStore(copy, sync=False) as other:
        assert other.current_grades(query=q, annotator="ada") == {"audio:a": 2}
        assert other.integrity_check() == "ok"


def test_record_judgements_is_all_or_nothing(store):
    q = store.add_query(modality="text", text="x")
    ok = dict(query=q, item_id="a", item_modality="audio", grade=1, annotator="ada")
    ids = store.record_judgements([ok, {**ok, "item_id": "b", "grade": 2}, {**ok, "grade": 3}])
    assert len(ids) == 3 and store.current_grades(query=q, annotator="ada") == {"audio:a": 3, "audio:b": 2}
    with pytest.raises(InputError):  # the unknown query is found inside the transaction: all rolled back
        store.record_judgements([{**ok, "item_id": "c"}, {**ok, "query": "nope"}])
    with pytest.raises(InputError):
        store.record_judgements([{**ok, "item_id": "d"}, {**ok, "grade": 7}])
    assert store.count_current() == 2 and len(store.judgements(history=True)) == 3
