"""``xmr corpus build``: the demo-corpus command (heavy imports inside the command function)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="build the demo corpus from the music21 core corpus")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="COMMAND")
    build = sub.add_parser(
        "build", help="render excerpts (audio, score image, captions) and write DIR/manifest.parquet",
        description="Build the demo corpus: music21 excerpts rendered with FluidSynth (audio) and "
                    "Verovio + resvg (score image), two caption styles, splits by piece. Resumable.",
    )
    build.add_argument("--out", required=True, help="output folder (an existing build there is resumed)")
    build.add_argument("--limit", type=int, default=None, help="stop after N items (balanced sample)")
    build.add_argument("--soundfont", default="FluidR3_GM.sf2", help="training soundfont (path or file name)")
    build.add_argument("--unseen-soundfont", default="TimGM6mb.sf2",
                       help="second soundfont for the test split's audio_unseen view")
    build.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    build.add_argument("--seed", type=int, default=0, help="seed of piece selection and splits")
    build.add_argument("--collections", default=None,
                       help="comma-separated collection keys (default: all)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--finished-only", action="store_true",
                       help="render nothing: write the manifest of the pieces finished so far")
    build.set_defaults(func=_build)
    corpus.set_defaults(func=lambda args: (corpus.print_help(), 2)[1])


def _build(args: argparse.Namespace) -> int:
    from xmr.data.corpus.build import build_corpus

    collections = None
    if args.collections:
        collections = tuple(c.strip() for c in args.collections.split(",") if c.strip())
    summary = build_corpus(out=args.out, seed=args.seed, limit=args.limit, workers=args.workers,
                           soundfont=args.soundfont, unseen_soundfont=args.unseen_soundfont,
                           collections=collections, progress=not args.no_progress,
                           finished_only=args.finished_only)
    print(summary.table())
    return 0
