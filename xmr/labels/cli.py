"""``xmr labels ...``: queries, pools, judging in the terminal, progress, agreement, export/import, backup."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from xmr.paths import labels_db

    labels = subparsers.add_parser("labels", help="relevance judgements: pool, judge, agree, export")
    sub = labels.add_subparsers(dest="labels_command", metavar="SUBCOMMAND")
    labels.set_defaults(func=lambda args: (labels.print_help(), 2)[1])

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=labels_db(),
                       help="the label database (default: $XMR_LABELS_DB or labels/labels.sqlite)")

    p = sub.add_parser("add-queries", help="add queries from a JSONL file (qid, modality, text | media)")
    db_arg(p)
    p.add_argument("queries", type=Path,
                   help="JSONL: one {qid, modality, text | media, source_item_id} a line")
    p.add_argument("--set", dest="eval_set", help="also put the queries into this evaluation set")
    p.add_argument("--created-by", default=None, help="annotator recorded as the queries' author")
    p.set_defaults(func=_add_queries)

    p = sub.add_parser("pool", help="pool the top-k results of several runs for judging")
    db_arg(p)
    p.add_argument("--name", required=True, help="the pool's name")
    p.add_argument("--run", action="append", required=True, metavar="NAME=FILE",
                   help="a TREC run file (docnos '<modality>:<item_id>'); repeat for each run")
    p.add_argument("--depth", type=int, default=10, help="depth k of the pool (default 10)")
    p.add_argument("--overlap", type=int, default=1, help="annotators per result (2+ for agreement)")
    p.add_argument("--strategy", default="mtf", choices=["mtf", "thompson", "rank"], help="judging order")
    p.add_argument("--set", dest="eval_set", help="also put the pooled queries into this evaluation set")
    p.set_defaults(func=_pool)

    p = sub.add_parser("judge", help="grade pooled results in the terminal (0-3, u = undo, q = quit)")
    db_arg(p)
    p.add_argument("--annotator", required=True, help="your name")
    p.add_argument("--pool", default=None, help="only this pool")
    p.set_defaults(func=_judge)

    p = sub.add_parser("backup", help="a consistent copy of the database while annotators keep working")
    db_arg(p)
    p.add_argument("--out", type=Path, required=True,
                   help="the copy (one SQLite file; the stored query media go to <stem>_media/ beside it)")
    p.set_defaults(func=_backup)

    p = sub.add_parser("progress", help="progress per annotator and per query")
    db_arg(p)
    p.add_argument("--pool", default=None, help="only this pool")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_progress)

    p = sub.add_parser("sets", help="list the evaluation sets")
    db_arg(p)
    p.set_defaults(func=_sets)

    p = sub.add_parser("agreement", help="Cohen's / Fleiss' kappa, Krippendorff's alpha, disagreements")
    db_arg(p)
    p.add_argument("--set", dest="eval_set", help="only this evaluation set")
    p.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    p.set_defaults(func=_agreement)

    p = sub.add_parser("export", help="export judgements as TREC qrels, CSV or Parquet")
    db_arg(p)
    p.add_argument("--format", choices=["trec", "csv", "parquet"], default=None,
                   help="default from --out's suffix, else trec")
    p.add_argument("--out", type=Path, required=True, help="output file NAME.qrels / NAME.csv / NAME.parquet")
    p.add_argument("--aggregate", choices=["mean", "majority", "per-annotator"], default=None,
                   help="several annotators' grades: mean (rounded), majority, or per annotator "
                        "(TREC: one file each); default mean for trec, per-annotator rows for csv/parquet")
    p.add_argument("--set", dest="eval_set", help="only this evaluation set")
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="import an export (qrels / CSV / Parquet and NAME.queries.jsonl)")
    db_arg(p)
    p.add_argument("path", type=Path, help="the file to import")
    p.add_argument("--format", choices=["trec", "csv", "parquet"], default=None)
    p.add_argument("--annotator", default=None, help="annotator of files that name none (default 'imported')")
    p.add_argument("--set", dest="eval_set", help="also put the imported queries into this evaluation set")
    p.set_defaults(func=_import)

    p = sub.add_parser("evaluate", help="score a TREC run on an evaluation set (nDCG@10, MAP, P@10, R@10)")
    db_arg(p)
    p.add_argument("--run", type=Path, required=True, help="TREC run file")
    p.add_argument("--set", dest="eval_set", help="the evaluation set (default: every judged query)")
    p.add_argument("--aggregate", choices=["mean", "majority"], default="mean")
    p.set_defaults(func=_evaluate)


def _store(args: argparse.Namespace):
    from xmr.labels.hub import from_env
    from xmr.labels.store import LabelStore

    return LabelStore(args.db, sync=from_env())  # the Hub sync when XMR_LABELS_HUB_REPO is set


def _add_queries(args: argparse.Namespace) -> int:
    from xmr.eval.queries import read_queries

    rows = read_queries(args.queries)  # checked before the store is opened
    store = _store(args)
    qids = []
    for row in rows:
        qids.append(store.add_query_row(row, created_by=args.created_by))
    if args.eval_set:
        store.create_eval_set(args.eval_set, queries=qids)
    print(f"{len(qids)} queries in {args.db}")
    return 0


def _pool(args: argparse.Namespace) -> int:
    from xmr.errors import InputError

    runs = {}
    for spec in args.run:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--run takes NAME=FILE, not {spec!r}")
        runs[name] = Path(file)
    store = _store(args)
    store.add_pool(args.name, runs=runs, depth=args.depth, overlap=args.overlap, strategy=args.strategy,
                   eval_set=args.eval_set)
    info = next(p for p in store.list_pools() if p["name"] == args.name)
    size = sum(q.pool_size for q in store.progress(pool=args.name).queries)
    print(f"pool {args.name}: {info['queries']} queries, {size} results to judge "
          f"(depth {args.depth}, {len(runs)} runs, overlap {args.overlap}, {args.strategy})")
    return 0


def _backup(args: argparse.Namespace) -> int:
    import sqlite3

    from xmr.labels.schema import table_counts

    store = _store(args)
    out = store.backup(args.out)
    store.close()
    with contextlib.closing(sqlite3.connect(f"file:{out}?mode=ro", uri=True)) as conn:
        counts = table_counts(conn)
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    print(f"backup of {args.db.name} in {out.name}: {counts.get('judgements', 0)} judgements "
          f"({counts.get('current', 0)} current), {counts.get('queries', 0)} queries, "
          f"{counts.get('annotators', 0)} annotators, {counts.get('pools', 0)} pools; integrity {check}")
    print(json.dumps(counts))
    return 0 if check == "ok" else 1


def _judge(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        return _judge_loop(store, args)
    finally:
        store.release(args.annotator)  # what was shown but not graded goes back to the pool


def _judge_loop(store, args: argparse.Namespace) -> int:
    while True:
        items = store.reserve_next(args.annotator, 1, pool=args.pool)
        if not items:
            print("nothing left to judge for", args.annotator)
            return 0
        item = items[0]
        q = store.get_query(item.query_id)
        shown = q.text if q.text is not None else str(q.media_path)
        print(f"\n[{q.qid}] {q.modality}: {shown}\n  result {item.docno} (best rank {item.best_rank})")
        try:
            answer = input("  grade 0-3, u = undo, q = quit: ").strip().lower()
        except EOFError:
            return 0
        if answer == "q":
            return 0
        if answer == "u":
            done = store.undo(annotator=args.annotator)
            print("  undone" if done else "  nothing to undo")
        elif answer in {"0", "1", "2", "3"}:
            store.record_judgement(query=item.query_id, item_id=item.item_id,
                                   item_modality=item.item_modality, grade=int(answer),
                                   annotator=args.annotator)
        else:
            print("  ?")


def _progress(args: argparse.Namespace) -> int:
    prog = _store(args).progress(pool=args.pool)
    if args.json:
        print(json.dumps(prog.to_dict(), indent=1))
        return 0
    print(f"{'annotator':<20} {'judged':>7} {'queries':>7} {'left':>6}")
    for a in prog.annotators:
        print(f"{a.annotator:<20} {a.judged:>7} {a.queries:>7} {a.remaining:>6}")
    print(f"\n{'qid':<16} {'pool':>5} {'judged':>7} {'complete':>8}  annotators")
    for q in prog.queries:
        who = ", ".join(q.annotators)
        print(f"{q.qid:<16} {q.pool_size:>5} {q.judged_items:>7} {q.complete_items:>8}  {who}")
    return 0


def _sets(args: argparse.Namespace) -> int:
    print(f"{'set':<24} {'queries':>7} {'judged':>7} {'grades':>7}")
    for s in _store(args).list_eval_sets():
        print(f"{s.name:<24} {s.n_queries:>7} {s.n_judged_queries:>7} {s.n_judgements:>7}")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from xmr.labels.agreement import agreement_report

    report = agreement_report(_store(args), eval_set=args.eval_set)
    print(report.format())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    return 0


def _export(args: argparse.Namespace) -> int:
    from xmr.labels.export import export_labels

    paths = export_labels(_store(args), out=args.out, format=args.format, aggregate=args.aggregate,
                          eval_set=args.eval_set)
    for p in paths:
        print(p)
    return 0


def _import(args: argparse.Namespace) -> int:
    from xmr.labels.export import import_labels

    s = import_labels(_store(args), path=args.path, format=args.format, annotator=args.annotator,
                      eval_set=args.eval_set)
    print(f"imported {s.queries} new queries, {s.judgements} judgements ({s.skipped} already there)",
          file=sys.stdout)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from xmr.labels.evaluate import evaluate_run

    print(evaluate_run(_store(args), run=args.run, eval_set=args.eval_set, aggregate=args.aggregate).format())
    return 0
