"""Acceptance 1 and 2: many concurrent writers, and a writer killed with SIGKILL mid-burst."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from xmr.labels import LabelStore

ROOT = Path(__file__).resolve().parents[1]


def test_32_threads_write_100_judgements_each(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", sync=False, busy_timeout_ms=50)  # short: the retry loop works
    queries = [store.add_query(modality="text", text=f"query {i}") for i in range(4)]
    errors: list[BaseException] = []
    ids: list[int] = []
    ids_lock = threading.Lock()
    start = threading.Barrier(32)

    def writer(t: int) -> None:
        try:
            start.wait()
            mine = []
            for i in range(100):
                mine.append(store.record_judgement(
                    query=queries[i % 4], item_id=f"item{i}", item_modality="audio", grade=(t + i) % 4,
                    annotator=f"annotator{t}"))
            with ids_lock:
                ids.extend(mine)
        except BaseException as err:  # noqa: BLE001 - any error reaching a caller fails the test
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(ids) == len(set(ids)) == 3200
    assert store.count_current() == 3200
    per_annotator = [len(store.judgements(annotator=f"annotator{t}")) for t in range(32)]
    assert per_annotator == [100] * 32
    assert store.integrity_check() == "ok"
    store.close()


def test_threads_regrading_one_item_leave_exactly_one_current(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", sync=False, synchronous="NORMAL")
    q = store.add_query(modality="text", text="contested")
    errors = []

    def writer(t: int) -> None:
        try:
            for i in range(25):
                store.record_judgement(query=q, item_id="same", item_modality="image", grade=(t + i) % 4,
                                       annotator="ada")
                if i % 5 == 4:
                    store.undo(annotator="ada")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    history = store.judgements(annotator="ada", history=True)
    assert len(history) == 200
    assert sum(j.state == "current" for j in history) <= 1
    assert sum(j.state == "undone" for j in history) == 40
    # Every replaced row points to from a later row; the chain from the current row is consistent.
    by_id = {j.id: j for j in history}
    for j in history:
        if j.previous_id is not None:
            assert by_id[j.previous_id].id < j.id


WRITER = textwrap.dedent("""
    import sys
    from xmr.labels import LabelStore
    store = LabelStore(sys.argv[1], sync=False)
    q = store.add_query(modality="text", text="crash test")
    for i in range(1_000_000):
        jid = store.record_judgement(query=q, item_id=f"it{i}", item_modality="audio", grade=i % 4,
                                     annotator=sys.argv[2])
        sys.stdout.write(f"{jid}\\n")
        sys.stdout.flush()
""")


def _run_and_kill(db: Path, annotator: str, kill_after: int) -> list[int]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), annotator], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked = []
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) >= kill_after:
            break
    proc.send_signal(signal.SIGKILL)  # the writer is in the middle of its next transaction
    acked += [int(line) for line in proc.stdout if line.strip()]  # printed before it died: acknowledged
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_sigkill_mid_burst_loses_no_acknowledged_judgement(tmp_path):
    db = tmp_path / "crash.sqlite"
    all_acked = {}
    for round_, kill_after in enumerate((40, 97, 151)):
        acked = _run_and_kill(db, f"writer{round_}", kill_after)
        assert len(acked) >= kill_after
        all_acked[f"writer{round_}"] = acked
    store = LabelStore(db, sync=False)
    assert store.integrity_check() == "ok"
    for annotator, acked in all_acked.items():
        current = {j.id for j in store.judgements(annotator=annotator)}
        assert set(acked) <= current, f"lost {sorted(set(acked) - current)[:5]}"
        assert len(current) - len(acked) in (0, 1)  # at most the one committed but not yet printed
    store.record_judgement(query=1, item_id="after", item_modality="audio", grade=1, annotator="x")
    assert store.integrity_check() == "ok"
    store.close()


PROCESS_WRITER = textwrap.dedent("""
    import sys
    from xmr.labels import LabelStore
    store = LabelStore(sys.argv[1], sync=False, busy_timeout_ms=20)
    q = store.add_query(modality="text", text="shared query")
    for i in range(40):
        store.record_judgement(query=q, item_id=f"it{i}", item_modality="image", grade=i % 4,
                               annotator=sys.argv[2])
        store.record_judgement(query=q, item_id="common", item_modality="audio", grade=i % 4,
                               annotator="everyone")
    print("done")
""")


def test_processes_write_concurrently(tmp_path):
    db = tmp_path / "procs.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS_WRITER, str(db), f"p{k}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for k in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    assert all(out.strip() == "done" and err == "" for out, err in results)
    store = LabelStore(db, sync=False)
    assert len(store.list_queries()) == 1  # the same query added by four processes at once: deduplicated
    assert store.count_current() == 4 * 40 + 1
    assert len(store.judgements(annotator="everyone", history=True)) == 160
    assert store.integrity_check() == "ok"
    store.close()


def _forked_writer(store, name):
    for i in range(20):
        store.record_judgement(query="q1", item_id=f"f{i}", item_modality="audio", grade=1, annotator=name)
    store.close()


def test_a_store_inherited_through_fork_opens_its_own_connection(tmp_path):
    import multiprocessing

    store = LabelStore(tmp_path / "fork.sqlite", sync=False, synchronous="NORMAL")
    store.add_query(modality="text", text="forked")
    store.record_judgement(query="q1", item_id="parent", item_modality="audio", grade=2, annotator="parent")
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_forked_writer, args=(store, f"child{k}")) for k in range(2)]
    for c in children:
        c.start()
    for c in children:
        c.join(60)
    assert [c.exitcode for c in children] == [0, 0]
    store.record_judgement(query="q1", item_id="parent2", item_modality="audio", grade=2, annotator="parent")
    assert store.count_current() == 42 and store.integrity_check() == "ok"
    store.close()


def test_a_lock_held_past_the_busy_timeout_is_waited_out(tmp_path):
    import sqlite3
    import time

    store = LabelStore(tmp_path / "l.sqlite", sync=False, busy_timeout_ms=10, max_wait_s=20)
    q = store.add_query(modality="text", text="blocked")
    other = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 0.3 s
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    t0 = time.monotonic()
    jid = store.record_judgement(query=q, item_id="a", item_modality="audio", grade=1, annotator="ada")
    waited = time.monotonic() - t0
    release.join()
    other.close()
    assert store.get_judgement(jid).state == "current"
    assert store.busy_retries > 0 and waited > 0.2  # it waited for the lock instead of failing
    store.close()


def test_a_lock_held_for_ever_gives_a_one_line_store_error(tmp_path):
    import sqlite3

    import pytest

    from xmr.labels import StoreBusyError

    store = LabelStore(tmp_path / "l.sqlite", sync=False, busy_timeout_ms=10, max_wait_s=0.2)
    q = store.add_query(modality="text", text="blocked")
    other = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreBusyError, match="stayed locked"):
        store.record_judgement(query=q, item_id="a", item_modality="audio", grade=1, annotator="ada")
    other.execute("COMMIT")
    other.close()
    assert store.count_current() == 0
    store.record_judgement(query=q, item_id="a", item_modality="audio", grade=1, annotator="ada")
    assert store.count_current() == 1
    store.close()
