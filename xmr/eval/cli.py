"""``xmr eval``: metrics report of a checkpoint (JSON + Markdown table + plots).

Heavy imports (torch, the model, matplotlib) happen inside the command function.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="score a checkpoint on a manifest split and/or human labels (qrels)",
        description="Embed a manifest split with a checkpoint and report retrieval metrics for both "
                    "directions of every modality pair (R@K, MRR, MedR, MeanR, mAP, mAP@10, nDCG@K, "
                    "P@K) with the candidate-set size and the random-chance value; write metrics.json, "
                    "metrics.md and PNG plots (rank CDF, precision-recall). With --qrels, also score "
                    "the checkpoint on a human-labelled set (NAME.qrels + NAME.queries.jsonl).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--manifest", required=True, help="manifest file (CSV, JSONL, Parquet)")
    p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' for every row)")
    p.add_argument("--qrels", default=None,
                   help="TREC qrels of a human-labelled set; NAME.queries.jsonl must be beside it")
    p.add_argument("--qrels-only", action="store_true", help="score only the qrels set, not the split")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="a second checkpoint: paired significance tests on the same queries")
    p.add_argument("--caption-style", choices=("full", "content", "both"), default="both",
                   help="caption style(s) of the text side (demo corpus; default both)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of the split")
    p.add_argument("--ks", default="1,5,10,25,50,100", help="cut-offs K (comma-separated)")
    p.add_argument("--no-unseen", action="store_true", help="skip the unseen-soundfont audio view")
    p.add_argument("--batch-size", type=int, default=32, help="items per forward pass")
    p.add_argument("--out", required=True, help="output folder for metrics.json, metrics.md and plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval)


def _parse_ks(text: str) -> tuple[int, ...]:
    from xmr.errors import InputError

    try:
        ks = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise InputError(f"--ks must be comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise InputError(f"--ks must be positive integers, got {text!r}")
    return ks


def _eval(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import xmr
    from xmr.errors import InputError
    from xmr.eval.evaluate import (
        caption_styles_of,
        compare_evaluations,
        evaluate_checkpoint,
        evaluate_qrels_set,
    )
    from xmr.eval.report import markdown_tables, write_report

    ks = _parse_ks(args.ks)
    caption_styles_of(args.caption_style)
    if args.qrels_only and not args.qrels:
        raise InputError("--qrels-only needs --qrels")
    for flag, value in (("--checkpoint", args.checkpoint), ("--compare", args.compare)):
        if value and not Path(value).exists():
            raise InputError(f"{flag}: no such checkpoint folder: {value}")
    split = None if args.split == "all" else args.split
    progress = not args.no_progress and sys.stderr.isatty()
    model = xmr.load_model(args.checkpoint)
    common = dict(manifest=args.manifest, split=split, caption_style=args.caption_style, limit=args.limit,
                  ks=ks, include_unseen=not args.no_unseen, batch_size=args.batch_size, progress=progress)
    ev = other = compare = qrels_result = None
    if not args.qrels_only:
        ev = evaluate_checkpoint(checkpoint=args.checkpoint, model=model, **common)
    if args.compare:
        other_model = xmr.load_model(args.compare)
        if ev is not None:
            other = evaluate_checkpoint(checkpoint=args.compare, model=other_model, **common)
            compare = compare_evaluations(ev, other)
    if args.qrels:
        qrels_result = evaluate_qrels_set(qrels=args.qrels, manifest=args.manifest, model=model,
                                          batch_size=args.batch_size, progress=progress)
        if args.compare:
            from xmr.eval.compare import compare_per_query

            other_q = evaluate_qrels_set(qrels=args.qrels, manifest=args.manifest, model=other_model,
                                         batch_size=args.batch_size, progress=progress)
            qids = sorted(qrels_result["per_query"])
            qrels_result["compare"] = {
                "other": {k: v for k, v in other_q.items() if k != "run"},
                "nDCG@10": compare_per_query([qrels_result["per_query"][q]["nDCG@10"] for q in qids],
                                             [other_q["per_query"][q]["nDCG@10"] for q in qids]),
            }
    label = Path(args.compare).name if args.compare else ""
    paths = write_report(ev, args.out, other=other, other_label=label, compare=compare,
                         qrels_result=qrels_result)
    if ev is not None:
        print(markdown_tables(ev.metrics))
    if qrels_result is not None:
        m = qrels_result["measures"]
        print("human labels: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items())
              + f" ({qrels_result['n_queries']} queries)")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
