"""Task distribution (reservations with leases), WAL checkpoints and online backups of the label store."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections import Counter

import pytest

from xmr.labels import LabelStore
from xmr.labels.db import Database
from xmr.labels.schema import MIGRATIONS, table_counts


def pooled_store(path, *, n_queries=4, depth=5, overlap=1, **kwargs) -> LabelStore:
    store = LabelStore(path, sync=False, **kwargs)
    run = {}
    for i in range(n_queries):
        store.add_query(modality="text", text=f"query {i}", qid=f"q{i}")
        run[f"q{i}"] = [(f"audio:item{i}-{r}", 1.0 - r / 10) for r in range(depth)]
    store.add_pool("p", runs={"model": run}, depth=depth, overlap=overlap)
    return store


def grade(store: LabelStore, item, annotator: str, g: int = 1) -> int:
    return store.record_judgement(query=item.query_id, item_id=item.item_id, item_modality=item.item_modality,
                                  grade=g, annotator=annotator)


def grade_until_empty(store: LabelStore, names: list[str]) -> list[BaseException]:
    """Each name in its own thread: reserve, grade, repeat until nothing is left for it."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def work(name: str) -> None:
        try:
            start.wait()
            for _ in range(1000):  # bounded
                items = store.reserve_next(name)
                if not items:
                    return
                grade(store, items[0], name, g=len(name) % 4)
        except BaseException as err:  # noqa: BLE001 - any error fails the test
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_a_shown_result_is_reserved_and_others_get_other_results(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=1, depth=3)
    [a] = store.reserve_next("ada")
    [b] = store.reserve_next("bob")
    [c] = store.reserve_next("cyd")
    assert len({a.docno, b.docno, c.docno}) == 3
    assert store.reserve_next("dan") == []  # all three are out, overlap 1
    assert store.next_items("dan", 5) == []
    assert store.progress().queries[0].reserved_items == 3
    assert sorted(r["annotator"] for r in store.reservations()) == ["ada", "bob", "cyd"]


def test_asking_again_gives_back_the_pending_result(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite")
    [first] = store.reserve_next("ada")
    [again] = store.reserve_next("ada")  # a page reload: no grade in between
    assert again.docno == first.docno and again.qid == first.qid
    grade(store, first, "ada")
    [nxt] = store.reserve_next("ada")
    assert nxt.docno != first.docno and nxt.qid == first.qid  # the started query goes on
    assert [r["docno"] for r in store.reservations()] == [nxt.docno]  # the graded one is released


def test_an_expired_lease_returns_the_result_to_the_pool(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=1, depth=1)
    [a] = store.reserve_next("ada", lease_s=0.05)
    assert store.reserve_next("bob") == []
    time.sleep(0.1)
    assert store.reservations() == []
    [b] = store.reserve_next("bob")
    assert b.docno == a.docno
    assert len(store.reservations(live_only=False)) == 1  # ada's expired row was dropped
    # ada comes back late and grades anyway: a human grade is never refused
    grade(store, a, "ada")
    assert len(store.judgements()) == 1


def test_progress_of_one_annotator_matches_the_full_table(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=2, depth=3)
    for name in ("ada", "bob"):
        [item] = store.reserve_next(name)
        grade(store, item, name)
    full = {a.annotator: a for a in store.progress().annotators}
    [only] = store.progress(annotator="bob").annotators
    assert only == full["bob"] and only.judged == 1 and only.remaining == 4
    assert store.progress(annotator="nobody").annotators == []


def test_release_gives_back_every_reservation(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=1, depth=2)
    assert len(store.reserve_next("ada", 2)) == 2
    assert store.reserve_next("bob") == []
    assert store.release("ada") == 2
    assert len(store.reserve_next("bob", 2)) == 2


def test_undo_keeps_the_result_for_its_annotator(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=1, depth=1)
    [a] = store.reserve_next("ada")
    grade(store, a, "ada")
    assert store.reservations() == []
    store.undo(annotator="ada")
    assert store.reserve_next("bob") == []  # ada is regrading it
    [again] = store.reserve_next("ada")
    assert again.docno == a.docno


def test_fresh_annotators_spread_over_the_queries(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=12, depth=10)
    # names whose crc32 collide modulo 12 used to land on the same query
    firsts = [store.reserve_next(f"annotator{i}")[0] for i in range(12)]
    assert len({f.qid for f in firsts}) == 12
    thirteenth = store.reserve_next("annotator12")[0]
    assert thirteenth.qid in {f.qid for f in firsts}  # every query has one: any of them


@pytest.mark.parametrize("n_annotators", [8, 32])
def test_overlap_one_many_annotators_grade_every_result_once(tmp_path, n_annotators):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=12, depth=10, busy_timeout_ms=50)
    errors = grade_until_empty(store, [f"a{i}" for i in range(n_annotators)])
    assert errors == []
    per_result = Counter((j.qid, j.docno) for j in store.judgements())
    assert len(per_result) == 120 and set(per_result.values()) == {1}
    assert store.reservations() == []
    assert all(q.complete_items == q.pool_size == 10 for q in store.progress().queries)


def test_overlap_two_every_result_gets_two_different_annotators(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=6, depth=5, overlap=2, busy_timeout_ms=50)
    errors = grade_until_empty(store, [f"a{i}" for i in range(8)])
    assert errors == []
    who: dict[tuple[str, str], list[str]] = {}
    for j in store.judgements():
        who.setdefault((j.qid, j.docno), []).append(j.annotator)
    assert len(who) == 30
    assert all(len(names) == 2 and len(set(names)) == 2 for names in who.values())


def test_a_version_one_database_is_migrated_with_its_grades(tmp_path):
    path = tmp_path / "old.sqlite"
    old = Database(path, migrations=MIGRATIONS[:1])
    old._write(lambda c: c.execute("INSERT INTO annotators(name, created_at) VALUES ('ada', 'then')"))
    old.close()
    store = LabelStore(path, sync=False)
    assert store.schema_version == len(MIGRATIONS) == 2
    assert store.annotators() == ["ada"]
    assert store.reservations() == []


# ----------------------------------------------------------------- complete files


def copy_of_db_file_alone(store: LabelStore, dst) -> dict[str, int]:
    shutil.copyfile(store.path, dst)  # no -wal, no -shm
    with sqlite3.connect(dst) as conn:
        return table_counts(conn)


def test_close_checkpoints_so_the_database_file_alone_holds_every_grade(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", checkpoint_every_s=None)
    for i in range(20):
        [item] = store.reserve_next("ada")
        grade(store, item, "ada", i % 4)
    expected = store.counts()
    assert expected["judgements"] == 20
    store.close()
    assert not (tmp_path / "l.sqlite-wal").exists() or (tmp_path / "l.sqlite-wal").stat().st_size == 0
    assert copy_of_db_file_alone(store, tmp_path / "copy.sqlite") == expected


def test_the_timer_checkpoints_while_the_store_stays_open(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", checkpoint_every_s=0.05)
    for i in range(10):
        [item] = store.reserve_next("ada")
        grade(store, item, "ada", i % 4)
    expected = store.counts()
    for _ in range(200):  # bounded wait for one timer round after the last write
        done = store.checkpoints
        time.sleep(0.05)
        if store.checkpoints > done + 1:
            break
    assert store.checkpoints > 0
    assert copy_of_db_file_alone(store, tmp_path / "copy.sqlite") == expected
    store.close()


def test_backup_while_annotators_write_is_one_consistent_snapshot(tmp_path):
    store = pooled_store(tmp_path / "l.sqlite", n_queries=12, depth=10, busy_timeout_ms=50)
    done = threading.Event()
    backups = []

    def backup_loop() -> None:
        for k in range(200):  # bounded
            backups.append(store.backup(tmp_path / f"b{k}.sqlite"))
            if done.is_set():
                return

    t = threading.Thread(target=backup_loop)
    t.start()
    errors = grade_until_empty(store, [f"a{i}" for i in range(8)])
    done.set()
    t.join()
    assert errors == []
    assert len(backups) >= 2
    backups.append(store.backup(tmp_path / "after.sqlite"))  # the annotators are done: all 120
    live = sqlite3.connect(store.path)
    for b in backups:
        with sqlite3.connect(b) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            n, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM judgements").fetchone()
        # a snapshot: exactly the judgements the live store had up to its newest row
        assert live.execute("SELECT COUNT(*) FROM judgements WHERE id <= ?", (top,)).fetchone()[0] == n
    with sqlite3.connect(backups[-1]) as conn:
        assert table_counts(conn)["judgements"] == 120
    reopened = LabelStore(backups[-1], sync=False, checkpoint_every_s=None)
    assert len(reopened.judgements()) == 120
    assert not list(tmp_path.glob(".*.part"))


def test_backup_refuses_its_own_database(tmp_path):
    from xmr.errors import InputError

    store = pooled_store(tmp_path / "l.sqlite")
    with pytest.raises(InputError, match="another file"):
        store.backup(tmp_path / "l.sqlite")


def test_cli_backup_prints_the_copy_counts(tmp_path, capsys):
    from xmr.cli import main

    store = pooled_store(tmp_path / "l.sqlite")
    for i in range(3):
        [item] = store.reserve_next("ada")
        grade(store, item, "ada", i)
    store.close()
    db, out = str(tmp_path / "l.sqlite"), str(tmp_path / "b.sqlite")
    assert main(["labels", "backup", "--db", db, "--out", out]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("backup of l.sqlite in b.sqlite: 3 judgements (3 current), 4 queries, 1 annotators, "
                      "1 pools; integrity ok")
    counts = json.loads(out[1])
    assert counts["judgements"] == 3 and counts["pool_entries"] == 20
