"""``xmr corpus build`` (the demo corpus) and ``xmr collection init`` (a folder of your own media
becomes a manifest); heavy imports inside the command functions."""

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
    build.add_argument("--no-views", action="store_true",
                       help="no extra views (other soundfont and engraving for train, another "
                            "engraver for test)")
    build.set_defaults(func=_build)
    corpus.set_defaults(func=lambda args: (corpus.print_help(), 2)[1])

    collection = subparsers.add_parser("collection", help="make a manifest from a folder of your own media")
    csub = collection.add_subparsers(dest="collection_command", metavar="COMMAND")
    init = csub.add_parser(
        "init", help="pair audio and image files by stem (or a sidecar table) and write a manifest",
        description="Pair audio and image files of DIR by stem or by a sidecar CSV/JSON, take captions "
                    "from the sidecar, STEM.txt files or audio tags, assign seeded splits, and report "
                    "what was paired and skipped.",
    )
    init.add_argument("folder", metavar="DIR", help="the collection folder (searched recursively)")
    init.add_argument("--out", default=None, help="manifest to write (default DIR/manifest.parquet)")
    init.add_argument("--sidecar", default=None,
                      help="CSV/JSON table with id, audio, image, caption, metadata columns "
                           "(default DIR/captions.csv or DIR/metadata.json when present)")
    init.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    init.add_argument("--val", type=float, default=0.1, help="fraction of items in the val split")
    init.add_argument("--test", type=float, default=0.1, help="fraction of items in the test split")
    init.add_argument("--no-tags", action="store_true", help="no captions from audio tags")
    init.set_defaults(func=_collection_init)
    collection.set_defaults(func=lambda args: (collection.print_help(), 2)[1])


def _collection_init(args: argparse.Namespace) -> int:
    from xmr.data.collection import init_collection

    report = init_collection(args.folder, out=args.out, sidecar=args.sidecar, seed=args.seed, val=args.val,
                             test=args.test, tags=not args.no_tags)
    print(report.table())
    return 0


def _build(args: argparse.Namespace) -> int:
    from xmr.data.corpus.build import build_corpus

    collections = None
    if args.collections:
        collections = tuple(c.strip() for c in args.collections.split(",") if c.strip())
    summary = build_corpus(out=args.out, seed=args.seed, limit=args.limit, workers=args.workers,
                           soundfont=args.soundfont, unseen_soundfont=args.unseen_soundfont,
                           collections=collections, progress=not args.no_progress,
                           finished_only=args.finished_only, with_views=not args.no_views)
    print(summary.table())
    return 0
