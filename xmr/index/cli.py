"""``xmr embed``, ``xmr index build`` and ``xmr search``: thin wiring over :mod:`xmr.index`."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    """Add the ``embed``, ``index`` (``build``) and ``search`` sub-commands."""
    p = sub.add_parser("embed", help="embed a collection (every item, every modality it has)",
                       description="Embed every item of a manifest in every modality it has. Resumable "
                       "(rerun with the same --out); under torchrun each rank embeds its share and rank 0 "
                       "merges.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--manifest", required=True, help="manifest file (CSV, JSONL or Parquet)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=32, help="items per forward pass (default 32)")
    p.add_argument("--splits", default=None, help="comma-separated splits to embed (default: all)")
    p.add_argument("--modalities", default=None, help="comma-separated subset of audio,image,text")
    p.add_argument("--chunk-size", type=int, default=64, help="items per resumable chunk (default 64)")
    p.add_argument("--device", default=None, help="torch device (default: the rank's GPU if any, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)

    p = sub.add_parser("index", help="build FAISS indexes from embeddings")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION")
    b = isub.add_parser("build", help="one FAISS index per modality, tuned for a target recall",
                        description="Build one inner-product FAISS index per modality (and per audio "
                        "window) from an embeddings folder, tuned with cross-modal queries.")
    b.add_argument("--embeddings", required=True, help="folder written by xmr embed")
    b.add_argument("--out", required=True, help="index folder to write")
    b.add_argument("--factory", default="auto", help="auto (by size and memory budget) or a FAISS factory "
                   "string such as Flat, HNSW32, IVF1024,Flat, OPQ32,IVF4096,PQ32,RFlat")
    b.add_argument("--memory-budget", default=None, help="RAM the indexes may take, e.g. 2G (auto only)")
    b.add_argument("--target-recall", type=float, default=0.95, help="recall@10 vs exact search (0.95)")
    b.set_defaults(func=_index_build)
    h = isub.add_parser("hubness", help="lower each row's score by how near it lies to queries at large",
                        description="Give the audio and image indexes of an index folder hubness offsets "
                        "(CSLS over a bank of training queries: whole and partial audio and scores, "
                        "captions): search then ranks rows by cosine - beta * offset.")
    h.add_argument("--index", required=True, help="index folder (rewritten in place)")
    h.add_argument("--manifest", required=True, help="manifest of the indexed items (the bank's media)")
    h.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the index's own)")
    h.add_argument("--split", default="train", help="split of the bank's items (default train)")
    h.add_argument("-n", type=int, default=1200, help="items in the bank (default 1200)")
    h.add_argument("-k", type=int, default=30, help="nearest bank queries averaged per row (default 30)")
    h.add_argument("--beta", type=float, default=1.0, help="weight of the offset (default 1; 0.5 is CSLS)")
    h.add_argument("--targets", default="audio,image", help="indexes to correct (default audio,image)")
    h.add_argument("--seed", type=int, default=0)
    h.set_defaults(func=_index_hubness)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    p = sub.add_parser("search", help="query an index from the shell",
                       description="Search an index with text, audio and/or image inputs (fused by "
                       "weights) and print ranked results.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--text", action="append", default=[], help="a text query (repeatable)")
    p.add_argument("--audio", action="append", default=[], help="an audio file (repeatable)")
    p.add_argument("--image", action="append", default=[], help="an image file (repeatable)")
    p.add_argument("--weights", default=None, help="comma-separated weights, one per input in the order "
                   "audio, image, text (may be negative)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--target", default=None, help="comma-separated modalities to search (default: all)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the index's own)")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=V1[,V2]",
                   help="keep results whose metadata column has one of the values (repeatable)")
    p.add_argument("--manifest", default=None, help="manifest of the indexed items: with an audio query, "
                   "print the bars of each result's score that match best (items with a bar alignment)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(func=_search)


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _embed(args: argparse.Namespace) -> int:
    from xmr.index.embed import embed_manifest

    out = embed_manifest(checkpoint=args.checkpoint, manifest=args.manifest, out=args.out,
                         batch_size=args.batch_size, splits=_csv(args.splits),
                         modalities=_csv(args.modalities), chunk_size=args.chunk_size,
                         progress=not args.no_progress, device=args.device)
    emb = out / "embeddings.json"
    if emb.exists():
        counts = json.loads(emb.read_text())["counts"]
        print(f"embedded into {out}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from xmr.index.pipeline import build_indexes

    store = build_indexes(embeddings=args.embeddings, out=args.out, factory=args.factory,
                          memory_budget=args.memory_budget, target_recall=args.target_recall)
    for name, info in store.info.items():
        params = ", ".join(f"{k}={v:g}" for k, v in info["search_params"].items()) or "-"
        print(f"{name}: {info['count']} vectors, {info['factory']} ({params}), recall@{info['recall_k']} "
              f"{info['recall']:.3f} on {info['recall_queries']} queries")
    print(f"wrote {args.out}")
    return 0


def _index_hubness(args: argparse.Namespace) -> int:
    from xmr.index.pipeline import add_hubness

    targets = _csv(args.targets) or []
    store = add_hubness(index=args.index, manifest=args.manifest, checkpoint=args.checkpoint,
                        split=args.split, n=args.n, k=args.k, beta=args.beta, targets=targets, seed=args.seed)
    for name in targets:
        rec = store.info[name]["hubness"]
        banks = ", ".join(f"{m} ({b['queries']} queries of {b['items']} items)"
                          for m, b in rec["banks"].items())
        print(f"{name}: offsets for {banks}, k={rec['k']}, beta={rec['beta']:g}")
    print(f"wrote {args.index}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from xmr.errors import InputError
    from xmr.index.pipeline import search

    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise InputError(f"--weights must be numbers separated by commas, got {args.weights!r}") from None
    filters = {}
    for f in args.filter:
        if "=" not in f:
            raise InputError(f"--filter needs COLUMN=VALUE[,VALUE], got {f!r}")
        col, values = f.split("=", 1)
        filters[col.strip()] = _csv(values) or [""]
    notes: list[str] = []
    hits = search(index=args.index, text=args.text, audio=args.audio, image=args.image, weights=weights,
                  k=args.k, targets=_csv(args.target), checkpoint=args.checkpoint, filters=filters or None,
                  manifest=args.manifest, notes=notes)
    for note in notes:  # on stderr, so that --json output stays one object per line
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        for h in hits:
            row = {"rank": h.rank, "id": h.item_id, "modality": h.modality, "score": round(h.score, 6),
                   "start": h.start, "end": h.end, "caption": h.caption,
                   "bars": None if h.bars is None else h.bars.to_dict()}
            print(json.dumps(row))
        return 0
    if not hits:
        print("no results")
        return 0
    with_bars = any(h.bars is not None for h in hits)
    bars_head = f"  {'bars':<14}" if with_bars else ""
    print(f"{'rank':>4}  {'modality':<8} {'score':>7}  {'at':>11}{bars_head}  {'id':<28} caption")
    for h in hits:
        at = f"{h.start:.1f}-{h.end:.1f}s" if h.start is not None else ""
        bars = f"  {_bars_cell(h.bars):<14}" if with_bars else ""
        caption = h.caption if len(h.caption) <= 70 else h.caption[:67] + "..."
        print(f"{h.rank:>4}  {h.modality:<8} {h.score:7.4f}  {at:>11}{bars}  {h.item_id:<28} {caption}")
    sys.stdout.flush()
    return 0


def _bars_cell(match) -> str:
    """``bars 2–3/5`` (the matched bars of the item's 5), or empty."""
    return "" if match is None else f"{match.label}/{match.n_bars}"
