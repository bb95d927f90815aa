"""Load test of labelling: N annotators grade through the real app's API until the pool is empty.

Launches ``python app.py`` (the demo named by ``XMR_*``, default the bundled one) on a free
127.0.0.1 port with a fresh label database, lets the app pool its demo queries (12 text queries,
top 10 each: 120 results, ``--overlap`` grades asked per result), then runs ``--annotators``
``gradio_client`` clients at once, each its own visitor: ``/label_next`` once, then ``/grade_G``
(save the grade, get the next result) until the app says nothing is left, with ``--think`` seconds
between seeing a result and grading it. Every grade the app acknowledged is checked against the
database afterwards.

Measured: latency of ``/label_next`` and of the grade calls (p50, p90, max), each until the shown
result's picture and clip are fetched (as the page does; the client itself downloads nothing), results
graded more
often than the overlap asks, results with exactly ``--overlap`` grades by as many annotators, lost
acknowledged grades, reservations left live, ``PRAGMA integrity_check``, and the app's RSS.

Crash and backup drills:

- ``--kill-after K``: SIGKILL the app once K grades were acknowledged (mid-burst), restart it on
  the same files, check every acknowledged grade and the integrity, wait for the leases of the
  results shown but not graded to run out, and let the annotators finish the pool;
- ``--backup-at K``: once K grades were acknowledged, ``xmr labels backup`` runs while the
  annotators keep grading; its copy must be one snapshot of the store (its judgements are exactly
  the store's judgements up to the newest one it holds) and hold every grade acknowledged before
  the backup started;
- ``--term``: at the end, SIGTERM the app and copy ``labels.sqlite`` alone (no ``-wal``): the
  copy must hold every grade.

Usage::

    python bench/label_load.py --annotators 32 --overlap 1
    python bench/label_load.py --annotators 8 --overlap 2 --kill-after 40 --lease 15 --term
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

from _serve import ROOT, App, cpu_seconds

QUERY = re.compile(r"\*\*Query\*\* `([^`]+)`")
RESULT = re.compile(r"\*\*Result\*\* `([^`]+)`")


def shown(out) -> tuple[str, str] | None:
    """(qid, item id) of the result a label endpoint shows, None when nothing is left."""
    q, r = QUERY.search(str(out[0])), RESULT.search(str(out[5]))
    return (q.group(1), r.group(1)) if q and r else None


def fetch_media(out) -> int:
    """GET the shown result's picture and clip as a browser does (the client does not download them
    itself); returns how many of the two were missing."""
    missing = 0
    for value in (out[3], out[4]):
        url = value.get("url") if isinstance(value, dict) else None
        if not url:
            missing += 1
            continue
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
    return missing


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


class Run:
    """One burst: every annotator grades until nothing is left (or the app goes away)."""

    def __init__(self, url: str, names: list[str], *, think: float, deadline: float, ramp: float = 0.0):
        self.url, self.names, self.think, self.deadline, self.ramp = url, names, think, deadline, ramp
        self.missing_media = 0
        self.lock = threading.Lock()
        self.acked: list[tuple[str, str, str, float]] = []  # (annotator, qid, item, time acknowledged)
        self.lat: dict[str, list[float]] = {"next": [], "grade": []}
        self.errors: list[str] = []
        self.finished: list[str] = []

    def annotator(self, name: str, start: threading.Barrier) -> None:
        from gradio_client import Client

        try:
            # the media are fetched as a browser would (fetch_media), not copied by the client
            client = Client(self.url, verbose=False, download_files=False)
            start.wait()
            time.sleep(self.ramp * self.names.index(name) / len(self.names))
            t = time.perf_counter()
            out = client.predict(name, "pooled queue", api_name="/label_next")
            missing = fetch_media(out) if shown(out) else 0
            with self.lock:
                self.lat["next"].append(time.perf_counter() - t)
                self.missing_media += missing
            for _ in range(10_000):  # bounded
                task = shown(out)
                if task is None:
                    with self.lock:
                        self.finished.append(name)
                    return
                if time.perf_counter() > self.deadline:
                    raise TimeoutError("deadline")
                if self.think:
                    time.sleep(self.think)
                grade = zlib.crc32(f"{name}/{task[1]}".encode()) % 4
                t = time.perf_counter()
                out = client.predict("pooled queue", api_name=f"/grade_{grade}")
                acked = time.time()
                missing = fetch_media(out) if shown(out) else 0
                with self.lock:
                    self.lat["grade"].append(time.perf_counter() - t)
                    self.acked.append((name, task[0], task[1], acked))
                    self.missing_media += missing
        except BaseException as err:  # noqa: BLE001 - the app may be killed on purpose
            with self.lock:
                self.errors.append(f"{name}: {type(err).__name__}: {' '.join(str(err).split())[:200]}")

    def start(self) -> list[threading.Thread]:
        barrier = threading.Barrier(len(self.names))
        threads = [
            threading.Thread(target=self.annotator, args=(n, barrier), daemon=True) for n in self.names
        ]
        for th in threads:
            th.start()
        return threads


def db_state(db: Path, overlap: int) -> dict:
    """What the database says: pool size, grades per result, live reservations, integrity."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pooled = {
            (r[0], f"{r[1]}:{r[2]}")
            for r in con.execute(
                "SELECT q.qid, e.item_modality, e.item_id FROM pool_entries e "
                "JOIN queries q ON q.id = e.query_id"
            )
        }
        per: dict[tuple[str, str], list[str]] = {}
        for qid, docno, who in con.execute(
            "SELECT q.qid, j.item_modality || ':' || j.item_id, a.name FROM judgements j "
            "JOIN queries q ON q.id = j.query_id JOIN annotators a ON a.id = j.annotator_id "
            "WHERE j.state = 'current'"
        ):
            per.setdefault((qid, docno), []).append(who)
        live = con.execute(
            "SELECT COUNT(*) FROM reservations WHERE expires_at > ?", (time.time(),)
        ).fetchone()[0]
        rows = con.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        current = {(who, qid, docno.split(":", 1)[1]) for (qid, docno), names in per.items() for who in names}
    finally:
        con.close()
    return {
        "pool_size": len(pooled),
        "graded_results": len(per),
        "grades": sum(len(v) for v in per.values()),
        "duplicates_beyond_overlap": sum(max(0, len(v) - overlap) for v in per.values()),
        "results_with_exactly_overlap_distinct": sum(len(v) == overlap == len(set(v)) for v in per.values()),
        "ungraded_pooled": len(pooled - set(per)),
        "live_reservations": live,
        "reservation_rows": rows,
        "integrity": check,
        "_current": current,
    }


def wait_for_pool(db: Path, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                if con.execute("SELECT COUNT(*) FROM pool_entries").fetchone()[0] > 0:
                    return time.perf_counter() - t0
            finally:
                con.close()
        except sqlite3.Error:
            pass
        time.sleep(0.5)
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=1, help="grades asked per result (XMR_LABELS_OVERLAP)")
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds between seeing a result and grading"
    )
    parser.add_argument(
        "--lease", type=float, default=None, help="reservation lease in s (XMR_LABELS_LEASE_S)"
    )
    parser.add_argument("--kill-after", type=int, default=None, help="SIGKILL the app after this many grades")
    parser.add_argument("--backup-at", type=int, default=None, help="run xmr labels backup after this many")
    parser.add_argument("--term", action="store_true", help="SIGTERM at the end, then copy the .sqlite alone")
    parser.add_argument(
        "--cache",
        choices=["shared", "fresh"],
        default="shared",
        help="rendered media: the usual cache (shared) or an empty one (fresh: all cold)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds between the pool being ready and the annotators arriving (start-up renders)",
    )
    parser.add_argument("--ramp", type=float, default=0.0, help="annotators arrive spread over this many s")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop every burst after this long")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="xmr-label-load-"))
    db = tmp / "labels.sqlite"
    env = {"XMR_LABELS_DB": str(db), "XMR_LABELS_OVERLAP": str(args.overlap)}
    if args.lease is not None:
        env["XMR_LABELS_LEASE_S"] = str(args.lease)
    if args.cache == "fresh":
        env["XMR_CACHE_DIR"] = str(tmp / "cache")
    log = tmp / "app.log"
    names = [f"annotator{i:02d}" for i in range(args.annotators)]
    report: dict = {
        "annotators": args.annotators,
        "overlap": args.overlap,
        "think_s": args.think,
        "cache": args.cache,
        "load_avg_before": os.getloadavg()[0],
    }

    app = App(env, log)
    report["ready_s"] = round(app.ready_s, 1)
    report["pool_ready_s"] = round(wait_for_pool(db, 240.0), 1)
    time.sleep(args.settle)
    report["settle_s"] = args.settle
    report["rss_start_mib"] = round(app.rss_mib())
    run = Run(
        app.url, names, think=args.think, deadline=time.perf_counter() + args.max_seconds, ramp=args.ramp
    )
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(app.proc.pid)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = run.start()
    backup: dict | None = None
    killed = False
    while any(th.is_alive() for th in threads):
        time.sleep(0.05)
        n = len(run.acked)
        if args.kill_after is not None and not killed and n >= args.kill_after:
            app.proc.send_signal(signal.SIGKILL)
            killed = True
            report["killed_after_acked"] = n
            app.proc.wait()
            report["live_reservations_at_kill"] = db_state(db, args.overlap)["live_reservations"]
        if args.backup_at is not None and backup is None and n >= args.backup_at:
            backup = {"acked_before": n, "started": time.time()}
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xmr",
                    "labels",
                    "backup",
                    "--db",
                    str(db),
                    "--out",
                    str(tmp / "backup.sqlite"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            backup.update(
                acked_after=len(run.acked),
                wall_s=round(time.time() - backup["started"], 2),
                rc=out.returncode,
                printed=out.stdout.strip().splitlines()[:1] or out.stderr[-500:],
            )
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    report["burst_wall_s"] = round(wall, 1)
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    calls = max(1, len(run.lat["next"]) + len(run.lat["grade"]))
    if not killed:  # CPU seconds per label call: the app's, and this load generator's own
        report["app_cpu_ms_per_call"] = round(1000 * (cpu_seconds(app.proc.pid) - cpu0) / calls, 1)
    report["client_cpu_ms_per_call"] = round(
        1000 * (me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime) / calls, 1
    )
    report["load_avg_after"] = round(os.getloadavg()[0], 1)
    report["rss_end_mib"] = round(app.rss_mib()) if not killed else None
    acked = list(run.acked)
    rounds = [run]

    if killed:
        app.stop(signal.SIGKILL)
        report["errors_at_kill"] = len(run.errors)
        app = App(env, log)
        state = db_state(db, args.overlap)
        lost = {(a, q, i) for a, q, i, _ in acked} - state["_current"]
        report["after_restart"] = {
            "acked": len(acked),
            "lost_acked": len(lost),
            "integrity": state["integrity"],
            "live_reservations": state["live_reservations"],
        }
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        last = con.execute("SELECT COALESCE(MAX(expires_at), 0) FROM reservations").fetchone()[0]
        con.close()
        time.sleep(max(0.0, last - time.time()) + 1.0)  # the leases of what was shown, not graded
        report["after_restart"]["live_reservations_after_lease"] = db_state(db, args.overlap)[
            "live_reservations"
        ]
        run2 = Run(app.url, names, think=args.think, deadline=time.perf_counter() + args.max_seconds)
        for th in run2.start():
            th.join()
        acked += run2.acked
        rounds.append(run2)
        report["rss_end_mib"] = round(app.rss_mib())

    lat = {k: [v for r in rounds for v in r.lat[k]] for k in ("next", "grade")}
    for k, v in lat.items():
        report[f"{k}_n"] = len(v)
        report[f"{k}_p50_s"], report[f"{k}_p90_s"] = round(statistics.median(v), 3), round(pct(v, 0.9), 3)
        report[f"{k}_max_s"] = round(max(v), 3)
    state = db_state(db, args.overlap)
    current = state.pop("_current")
    report.update(state)
    report["acked"] = len(acked)
    report["lost_acked"] = len({(a, q, i) for a, q, i, _ in acked} - current)
    report["ramp_s"] = args.ramp
    report["shown_without_picture_or_clip"] = sum(r.missing_media for r in rounds)
    report["finished_annotators"] = sum(len(r.finished) for r in rounds[-1:])
    report["errors"] = [e for r in rounds[-1:] for e in r.errors][:5]

    if backup is not None:
        with sqlite3.connect(tmp / "backup.sqlite") as bcon:
            n, top = bcon.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM judgements").fetchone()
            bcheck = bcon.execute("PRAGMA integrity_check").fetchone()[0]
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        live_upto = con.execute("SELECT COUNT(*) FROM judgements WHERE id <= ?", (top,)).fetchone()[0]
        con.close()
        backup.update(judgements=n, store_judgements_up_to_its_newest=live_upto, integrity=bcheck)
        backup.pop("started")
        report["backup"] = backup

    if args.term:
        rc = app.stop(signal.SIGTERM)
        wal = db.with_name(db.name + "-wal")
        copy = tmp / "copy-of-sqlite-alone.sqlite"
        shutil.copyfile(db, copy)
        with sqlite3.connect(copy) as ccon:
            try:
                in_copy = ccon.execute("SELECT COUNT(*) FROM judgements WHERE state = 'current'").fetchone()[
                    0
                ]
            except sqlite3.Error as err:
                in_copy = f"error: {err}"
        report["term"] = {
            "exit_code": rc,
            "sqlite_bytes": db.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "current_in_copy_of_sqlite_alone": in_copy,
            "current_in_store": state["grades"],
        }
    else:
        app.stop()
    report["folder"] = str(tmp)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    ok = (
        report["lost_acked"] == 0 and report["duplicates_beyond_overlap"] == 0 and report["integrity"] == "ok"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
