"""Build the demo corpus: plan pieces, render their excerpts in parallel, write the manifest.

The unit of work is a piece: a worker parses it once and renders all its excerpts and their
extra views (:mod:`xmr.data.corpus.views`), so big multi-tune files and long movements are never
parsed per item. Finished pieces leave a small
record under ``DIR/.pieces/`` and finished media are never rendered again, so an interrupted
build resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xmr.data.corpus import captions, render, views
from xmr.data.corpus.catalog import COLLECTIONS, COLLECTIONS_BY_KEY, Piece, plan_pieces, slug
from xmr.data.corpus.excerpts import (
    ExcerptError,
    bar_times,
    choose_windows,
    describe,
    draw_instrument,
    item_id,
    load_piece,
    make_excerpt,
    measure_table,
    piece_metadata,
    set_performance,
)
from xmr.errors import InputError

MANIFEST_NAME = "manifest.parquet"
RECORD_VERSION = 5  # 4: bar alignment columns; 5: views (views.parquet)

# Column order of the manifest (foundation schema first, then rendering inputs and metadata).
COLUMNS = (
    "id", "split", "audio", "image", "caption", "caption_full", "caption_content", "audio_unseen",
    "collection", "collection_name", "composer", "title", "genre", "key", "mode", "meter", "meter_kind",
    "tempo_bpm", "tempo_term", "beat_bpm", "instrument", "program", "voices", "register", "measure_start",
    "measure_end", "n_measures", "duration", "source", "tune", "piece_id", "soundfont", "soundfont_unseen",
    "bar_onsets", "bar_ends", "bar_x0", "bar_x1", "bar_y0", "bar_y1",
)


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one corpus build (the CLI flags of ``xmr corpus build``)."""

    out: Path
    seed: int = 0
    limit: int | None = None
    workers: int = 2
    soundfont: str = render.DEFAULT_SOUNDFONT
    unseen_soundfont: str = render.UNSEEN_SOUNDFONT
    collections: tuple[str, ...] | None = None
    with_views: bool = True


@dataclass
class BuildSummary:
    """What a build did: item counts, failures by reason, and time."""

    items: int = 0
    per_split: dict = field(default_factory=dict)
    per_collection: dict = field(default_factory=dict)
    pieces: int = 0
    pieces_failed: int = 0
    pieces_pending: int = 0
    failures: dict = field(default_factory=dict)
    rendered_files: int = 0
    reused_files: int = 0
    seconds: float = 0.0

    def table(self) -> str:
        lines = [f"{self.items} items from {self.pieces} pieces in {self.seconds:.0f} s "
                 f"({self.rendered_files} files rendered, {self.reused_files} reused)"]
        if self.pieces_pending:
            lines.append(f"pending     {self.pieces_pending} pieces not finished yet (not in the manifest)")
        lines.append("split       " + "  ".join(f"{k}={v}" for k, v in self.per_split.items()))
        lines.append("collection  " + "  ".join(f"{k}={v}" for k, v in self.per_collection.items()))
        if self.failures:
            lines.append("failures    " + "; ".join(f"{k}: {v}" for k, v in self.failures.items()))
        else:
            lines.append("failures    none")
        return "\n".join(lines)


def _media_rel(modality: str, ident: str) -> str:
    ext = "png" if modality == "image" else "flac"
    return f"{modality}/{ident}.{ext}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ExcerptError | render.RenderError):
        return str(exc)
    return f"{type(exc).__name__}"


def _render_views(excerpt, ident: str, split: str, *, out: Path, xml: str, title: str, performance,
                  seconds: float, result: dict) -> list[dict]:
    """Render item ``ident``'s views (:data:`views.VIEWS` of its split) into ``out``; an existing
    image view is engraved again for its bar layout only. Returns their rows of views.parquet."""
    rows = []
    for view in views.VIEWS.get(split, ()):
        path = out / views.view_rel(view, ident)
        have = path.is_file()
        if views.VIEW_MODALITY[view] == "audio":
            sf = views.draw_soundfont(ident)
            if not have:
                render.render_audio(performance(), path, soundfont=render.find_soundfont(sf), seconds=seconds)
            rows.append(views.view_row(ident, split, view, soundfont=sf))
        else:
            layout = views.draw_layout(ident, title) if view == "image_layout" else views.other_layout(title)
            bars, systems = render.render_view_image(excerpt, layout, None if have else path, xml=xml)
            rows.append(views.view_row(ident, split, view, layout=layout, systems=systems, bars=bars))
        result["reused" if have else "rendered"] += 1
    return rows


def process_piece(piece: Piece, split: str, *, out: Path, max_excerpts: int, soundfont: str,
                  unseen_soundfont: str, with_views: bool = True) -> dict:
    """Parse one piece, render all its excerpts (and with ``with_views`` their views) into ``out``;
    returns rows, view rows, failures and file counts."""
    coll = COLLECTIONS_BY_KEY[piece.collection]
    result: dict = {"rows": [], "views": [], "failures": [], "rendered": 0, "reused": 0}
    try:
        score = load_piece(piece.source, piece.number)
        table = measure_table(score)
        windows = choose_windows(piece, coll, table, max_excerpts)
        if not windows:
            raise ExcerptError("no run of bars lasting 8-12 s")
        meta = piece_metadata(score, piece, coll)
    except Exception as exc:  # noqa: BLE001 - any parser failure is counted, never fatal
        result["failures"].append(f"piece: {_reason(exc)}")
        return result
    sf_main, sf_unseen = render.find_soundfont(soundfont), render.find_soundfont(unseen_soundfont)
    for w in windows:
        ident = item_id(piece, w.start)
        try:
            excerpt = make_excerpt(score, w.start, w.end)
            desc = describe(excerpt, bpm=w.bpm)
            instrument, program = draw_instrument(coll, ident)
            onsets, ends = bar_times(excerpt, bpm=w.bpm)
            targets = [("audio", sf_main), ("image", None)]
            if split == "test":
                targets.append(("audio_unseen", sf_unseen))
            perf_cache: list = []

            def performance(excerpt=excerpt, bpm=w.bpm, program=program, cache=perf_cache):
                if not cache:
                    cache.append(set_performance(excerpt, bpm=bpm, program=program))
                return cache[0]

            xml = render.excerpt_xml(excerpt)
            layout = None
            for modality, sf in targets:
                path = out / _media_rel(modality, ident)
                if path.is_file():
                    result["reused"] += 1
                    continue
                if modality == "image":
                    layout = render.render_image(excerpt, path, xml=xml)
                else:
                    render.render_audio(performance(), path, soundfont=sf, seconds=w.seconds)
                result["rendered"] += 1
            if layout is None:  # the image was there already: engrave again for its bar layout
                layout = render.engrave_image(excerpt, xml=xml)[1]
            if len(onsets) != len(layout["bar_x0"]):
                raise render.RenderError("bars of the audio and the image differ")
        except Exception as exc:  # noqa: BLE001 - an item that fails is counted and skipped
            result["failures"].append(f"item: {_reason(exc)}")
            continue
        if with_views:
            try:
                result["views"].extend(_render_views(excerpt, ident, split, out=out, xml=xml,
                                                     title=meta["title"], performance=performance,
                                                     seconds=w.seconds, result=result))
            except Exception as exc:  # noqa: BLE001 - the item stays; its views are counted as failed
                result["failures"].append(f"view: {_reason(exc)}")
        row = {
            "id": ident, "split": split,
            "audio": _media_rel("audio", ident), "image": _media_rel("image", ident),
            "audio_unseen": _media_rel("audio_unseen", ident) if split == "test" else None,
            "collection": coll.key, "collection_name": coll.name, "composer": meta["composer"],
            "title": meta["title"], "genre": meta["genre"], "key": desc["key"], "mode": desc["mode"],
            "meter": desc["meter"], "meter_kind": desc["meter_kind"], "tempo_bpm": w.bpm,
            "tempo_term": desc["tempo_term"], "beat_bpm": desc["beat_bpm"],
            "instrument": instrument, "program": program,
            "voices": desc["voices"], "register": desc["register"], "measure_start": w.start,
            "measure_end": w.end, "n_measures": sum(1 for n, _ in table if w.start <= n <= w.end),
            "duration": w.seconds, "source": piece.source,
            "tune": piece.number if piece.number is not None else -1,
            "piece_id": piece.piece_id, "soundfont": Path(soundfont).name,
            "soundfont_unseen": Path(unseen_soundfont).name if split == "test" else None,
            "bar_onsets": onsets, "bar_ends": ends, **layout,
        }
        names = [row["composer"], row["title"], row["collection_name"], row["collection"]]
        row["caption_full"] = captions.full_caption(row)
        row["caption_content"] = captions.content_caption(row, names)
        row["caption"] = [row["caption_full"], row["caption_content"]]
        result["rows"].append(row)
    return result


def _record_path(out: Path, piece: Piece) -> Path:
    return out / ".pieces" / f"{slug(piece.piece_id)}.json"


def _record_key(split: str, kwargs: dict) -> dict:
    return {"version": RECORD_VERSION, "render": render.RENDER_VERSION, "split": split,
            "max_excerpts": kwargs["max_excerpts"], "soundfont": kwargs["soundfont"],
            "unseen_soundfont": kwargs["unseen_soundfont"],
            "views": views.VIEWS_VERSION if kwargs.get("with_views", True) else None}


def _load_record(piece: Piece, split: str, kwargs: dict) -> dict | None:
    """The saved result of a finished piece, if it is valid for these settings and its media exist."""
    record = _record_path(kwargs["out"], piece)
    if not record.is_file():
        return None
    try:
        saved = json.loads(record.read_text())
        if saved.get("key") == _record_key(split, kwargs) and all(
            (kwargs["out"] / row[m]).is_file()
            for row in saved["result"]["rows"] for m in ("audio", "image", "audio_unseen") if row.get(m)
        ) and all((kwargs["out"] / view["path"]).is_file() for view in saved["result"].get("views", [])):
            res = saved["result"]
            res["reused"] = res.get("rendered", 0) + res.get("reused", 0)
            res["rendered"] = 0
            return res
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _task(args: tuple) -> tuple[int, dict]:
    index, piece, split, kwargs = args
    res = _load_record(piece, split, kwargs)
    if res is not None:
        return index, res
    record = _record_path(kwargs["out"], piece)
    key = _record_key(split, kwargs)
    res = process_piece(piece, split, **kwargs)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": res}))
    tmp.replace(record)
    return index, res


def _init_worker() -> None:
    import os
    import warnings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")


def build_corpus(*, out: str | Path, seed: int = 0, limit: int | None = None, workers: int = 2,
                 soundfont: str = render.DEFAULT_SOUNDFONT, unseen_soundfont: str = render.UNSEEN_SOUNDFONT,
                 collections: tuple[str, ...] | None = None, progress: bool = True,
                 finished_only: bool = False, with_views: bool = True) -> BuildSummary:
    """Build the demo corpus into ``out``: ``manifest.parquet`` plus ``audio/``, ``image/`` and
    (test split) ``audio_unseen/`` media, and ``views.parquet`` with the extra views' media
    (``audio_sf/``, ``image_layout/`` for training items, ``image_other/`` for test items).

    Args:
        out: output folder (created; an existing build there is resumed).
        seed: seed of the piece selection and split assignment.
        limit: stop after this many items (a balanced sample across collections; each piece then
            gives at most ``limit // n_collections`` excerpts, at least one).
        workers: processes rendering pieces in parallel (1 = in this process).
        soundfont: training soundfont, a path or a file name in the usual soundfont folders.
        unseen_soundfont: second soundfont for the test split's ``audio_unseen`` view.
        collections: keys of the collections to use (default all; see ``catalog.COLLECTIONS``).
        progress: show a progress bar on stderr.
        finished_only: render nothing; write the manifest of the pieces finished so far (for
            example while another process is still building into ``out``).
        with_views: also render the extra views (:mod:`xmr.data.corpus.views`); without them
            ``views.parquet`` lists only the test split's ``audio_unseen``.

    Example:
        >>> summary = build_corpus(out="data/corpus", limit=200)  # doctest: +SKIP
        >>> summary.per_split  # doctest: +SKIP
        {'train': 158, 'val': 21, 'test': 21}
    """
    import pandas as pd
    from tqdm import tqdm

    from xmr.data.manifest import write_manifest

    t0 = time.time()
    out = Path(out)
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    if workers < 1:
        raise InputError("--workers must be at least 1")
    known = {c.key for c in COLLECTIONS}
    if collections:
        unknown = sorted(set(collections) - known)
        if unknown:
            raise InputError(
                f"unknown collection(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
            )
    render.find_soundfont(soundfont)
    render.find_soundfont(unseen_soundfont)
    if with_views:
        for sf in views.TRAIN_SOUNDFONTS:
            render.find_soundfont(sf)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_pieces(seed=seed, collections=tuple(collections) if collections else None)
    n_coll = len({p.collection for p, _ in plan}) or 1
    tasks = []
    for i, (piece, split) in enumerate(plan):
        cap = default_excerpt_cap(limit, n_coll, COLLECTIONS_BY_KEY[piece.collection].max_excerpts)
        kwargs = {"out": out, "max_excerpts": cap, "soundfont": soundfont,
                  "unseen_soundfont": unseen_soundfont, "with_views": with_views}
        tasks.append((i, piece, split, kwargs))

    rows: list[dict] = []
    view_rows: list[dict] = []
    failures: Counter = Counter()
    summary = BuildSummary()
    bar = tqdm(total=len(tasks), unit="piece", disable=not progress, dynamic_ncols=True)

    def consume(res: dict) -> bool:
        rows.extend(res["rows"])
        view_rows.extend(res.get("views", []))
        failures.update(res["failures"])
        summary.pieces += 1
        summary.pieces_failed += int(not res["rows"])
        summary.rendered_files += res["rendered"]
        summary.reused_files += res["reused"]
        bar.update(1)
        bar.set_postfix(items=len(rows), failed=sum(failures.values()), refresh=False)
        return limit is not None and len(rows) >= limit

    if finished_only:
        for _, piece, split, kwargs in tasks:
            res = _load_record(piece, split, kwargs)
            if res is None:
                summary.pieces_pending += 1
                continue
            if consume(res):
                break
    elif workers == 1:
        _init_worker()
        for task in tasks:
            if consume(_task(task)[1]):
                break
    else:
        import multiprocessing as mp

        # Ordered results keep the manifest (and a --limit prefix) independent of scheduling.
        with mp.get_context("fork").Pool(workers, initializer=_init_worker, maxtasksperchild=200) as pool:
            for _, res in pool.imap(_task, tasks, chunksize=1):
                if consume(res):
                    pool.terminate()
                    break
    bar.close()
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise InputError("the corpus build produced no items; see the failures above")
    df = pd.DataFrame(rows)[list(COLUMNS)].sort_values("id", kind="stable").reset_index(drop=True)
    write_manifest(df, out / MANIFEST_NAME)
    write_views(df, view_rows, out / views.VIEWS_NAME)

    summary.items = len(df)
    summary.per_split = {s: int((df["split"] == s).sum()) for s in ("train", "val", "test")}
    summary.per_collection = {k: int(v) for k, v in df["collection"].value_counts().sort_index().items()}
    summary.failures = dict(failures.most_common())
    summary.seconds = round(time.time() - t0, 1)
    if not finished_only:
        (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def write_views(manifest, view_rows: list[dict], path: Path) -> Path:
    """Write views.parquet: the rendered views of the manifest's items plus a row per test item's
    ``audio_unseen`` (so that one table lists every rendering besides an item's main two)."""
    ids = set(manifest["id"])
    rows = [v for v in view_rows if v["id"] in ids]
    for row in manifest.itertuples(index=False):
        if isinstance(row.audio_unseen, str) and row.audio_unseen:
            rows.append(views.view_row(row.id, row.split, "audio_unseen", soundfont=row.soundfont_unseen))
    frame = views.views_frame(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def default_excerpt_cap(limit: int | None, n_collections: int, cap: int) -> int:
    """Excerpts per piece for a build with ``limit`` items over ``n_collections`` collections."""
    return cap if limit is None else min(cap, max(1, math.floor(limit / n_collections)))
