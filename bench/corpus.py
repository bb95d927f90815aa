"""Corpus build cost per item, with and without the extra views (``xmr.data.corpus.views``).

    python bench/corpus.py --limit 40 [--write-readme]

Three builds of the same ``--limit`` sample in one process (``workers=1``), each into a fresh
folder: without views, with views, and views added to the finished build without them (what a
resumed build does when views are switched on: the main media are reused, the score is parsed and
engraved again for the bar layout, then the views are rendered). Seconds are wall clock and CPU
(this process plus its FluidSynth children); CPU seconds stay meaningful on a loaded machine.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

MARK_START, MARK_END = "<!-- bench-corpus:start -->", "<!-- bench-corpus:end -->"


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(out: Path, *, limit: int, with_views: bool, collections) -> dict:
    from xmr.data.corpus.build import build_corpus

    t0, c0 = time.perf_counter(), _cpu()
    summary = build_corpus(out=out, limit=limit, workers=1, progress=False, with_views=with_views,
                           collections=collections)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"items": summary.items, "files": summary.rendered_files, "wall": wall, "cpu": cpu,
            "per_split": summary.per_split}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--collections", default=None, help="comma-separated keys (default all)")
    ap.add_argument("--write-readme", action="store_true", help="put the table into bench/README.md")
    args = ap.parse_args(argv)
    collections = tuple(args.collections.split(",")) if args.collections else None
    root = Path(tempfile.mkdtemp(prefix="xmr-bench-corpus-"))
    try:
        plain = measure(root / "plain", limit=args.limit, with_views=False, collections=collections)
        views = measure(root / "views", limit=args.limit, with_views=True, collections=collections)
        # resume the plain build with views on: its records no longer match, main media are reused
        added = measure(root / "plain", limit=args.limit, with_views=True, collections=collections)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [("without views", plain), ("with views", views), ("views added to a finished build", added)]
    split = " / ".join(f"{k} {v}" for k, v in views["per_split"].items())
    lines = [
        f"`--limit {args.limit}` ({split}), one process; {platform.machine()}, run "
        f"{time.strftime('%Y-%m-%d')}. CPU = this process + FluidSynth.",
        "",
        "| build | items | files rendered | wall s | wall s / item | CPU s / item |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['items']} | {r['files']} | {r['wall']:.1f} | "
                     f"{r['wall'] / r['items']:.2f} | {r['cpu'] / r['items']:.2f} |")
    extra = (views["cpu"] - plain["cpu"]) / views["items"]
    lines.append("")
    lines.append(f"Views add {extra:.2f} CPU s per item ({views['cpu'] / plain['cpu']:.2f}× the build "
                 "without them).")
    table = "\n".join(lines)
    print(table)
    if args.write_readme:
        readme = Path(__file__).resolve().parent / "README.md"
        text = readme.read_text()
        block = f"{MARK_START}\n{table}\n{MARK_END}"
        if MARK_START in text:
            head, rest = text.split(MARK_START, 1)
            text = head + block + rest.split(MARK_END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n## Corpus build (`bench/corpus.py`)\n\n" + block + "\n"
        readme.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
