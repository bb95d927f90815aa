"""The manifest: one table that lists a collection's items, whatever the source.

Schema (one row per item):

========  ===========================================================================
column    holds
========  ===========================================================================
id        unique, non-empty string
split     non-empty string (``train``, ``val``, ``test``, or any name you use)
audio     path of the item's audio file, or missing
image     path of the item's image file, or missing
caption   the item's captions: a list of strings (one or several; may be empty)
...       any other column is metadata and is kept as it is (composer, genre, ...)
========  ===========================================================================

Optional bar alignment (:data:`BAR_COLUMNS`, written by the demo corpus; manifests without them
load as before): list columns with one value per bar, in order: ``bar_onsets``/``bar_ends``
(seconds in the audio), ``bar_x0``/``bar_x1`` (pixel columns ``[x0, x1)`` in the image) and
``bar_y0``/``bar_y1`` (pixel rows of the bar's system). :func:`bar_alignment` reads them from a row.

Every row needs at least one of audio, image or caption. Relative media paths are resolved
against the manifest's folder when it is read, and written relative to it again when they lie
inside it, so a folder with its manifest can be moved as a whole. Files are CSV (captions as a JSON
list such as ``["one", "two"]`` in one cell, or plain text for a single caption), JSON Lines, or
Parquet, chosen by the suffix. Errors are :class:`xmr.errors.ManifestError` with one line naming
the file, the row (data rows counted from 1, header excluded) and the column.

Example::

    from xmr.data.manifest import read_manifest, write_manifest
    df = read_manifest("my_collection/manifest.csv")   # audio/image now absolute paths
    write_manifest(df, "my_collection/manifest.parquet")
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xmr.data.jsonl import read_jsonl, write_jsonl
from xmr.errors import ManifestError

CORE_COLUMNS = ("id", "split", "audio", "image", "caption")
REQUIRED_COLUMNS = ("id", "split")
MEDIA_COLUMNS = ("audio", "image")
MODALITY_COLUMNS = ("audio", "image", "caption")
BAR_COLUMNS = ("bar_onsets", "bar_ends", "bar_x0", "bar_x1", "bar_y0", "bar_y1")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
_JSON_LIST_START = re.compile(r'^\[\s*("|\])')


def manifest_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"jsonl"`` or ``"parquet"`` from the file's suffix; ManifestError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ManifestError(
            f"{Path(path).name}: unknown manifest format {suffix or '(no suffix)'!r}; "
            "use .csv, .jsonl or .parquet"
        )
    return FORMATS[suffix]


def read_manifest(path: str | os.PathLike, *, resolve_paths: bool = True) -> pd.DataFrame:
    """Read and validate a manifest (CSV, JSONL or Parquet, by suffix).

    Args:
        path: the manifest file.
        resolve_paths: make relative ``audio``/``image`` paths absolute against the manifest's folder.

    Returns:
        A DataFrame with columns ``id, split, audio, image, caption`` first, then the metadata
        columns; ``caption`` holds ``list[str]``, missing media are ``None``. ``df.attrs`` records
        ``manifest_path`` and ``manifest_dir``.

    Raises:
        ManifestError: a missing or unreadable file, or a row that breaks the schema.

    Example::

        df = read_manifest("assets/demo/manifest.parquet")
        test = df[df.split == "test"]
    """
    path = Path(path)
    fmt = manifest_format(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    if fmt == "csv":
        raw = _read_csv(path)
    elif fmt == "jsonl":
        raw = _read_jsonl(path)
    else:
        raw = _read_parquet(path)
    base = path.resolve().parent
    df = validate_manifest(raw, base_dir=base if resolve_paths else None, source=path.name)
    df.attrs["manifest_path"] = str(path.resolve())
    df.attrs["manifest_dir"] = str(base)
    return df


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, *, relative_paths: bool = True) -> Path:
    """Validate and write a manifest; the format follows the suffix (.csv, .jsonl, .parquet).

    The file is written to a temporary name first and then renamed, so a reader never sees half a
    manifest.

    Args:
        df: a manifest (as :func:`read_manifest` returns, or any frame that passes validation).
        path: where to write.
        relative_paths: write absolute media paths that lie inside the manifest's folder relative
            to it (POSIX separators), so the folder can be moved.

    Returns:
        The path written.

    Example::

        write_manifest(df, "out/manifest.jsonl")
    """
    path = Path(path)
    fmt = manifest_format(path)
    out = validate_manifest(df, base_dir=None, source=path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if relative_paths:
        base = path.parent.resolve()
        for col in MEDIA_COLUMNS:
            out[col] = pd.Series([_relative_to(v, base) for v in out[col]], dtype=object, index=out.index)
    out.attrs = {}  # pandas would store attrs (our absolute folder) in Parquet metadata
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "csv":
            _write_csv(out, tmp)
        elif fmt == "jsonl":
            _write_jsonl(out, tmp)
        else:
            out.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def validate_manifest(
    df: pd.DataFrame,
    *,
    base_dir: str | os.PathLike | None = None,
    source: str = "manifest",
    check_files: bool = False,
) -> pd.DataFrame:
    """Check a manifest against the schema and return a normalised copy.

    Normalisation: ids and splits become stripped strings; missing media become ``None``;
    ``caption`` becomes a ``list[str]`` (a JSON list in a string is parsed, a plain string is one
    caption); relative media paths are made absolute against ``base_dir`` when it is given.

    Args:
        df: the table to check.
        base_dir: folder that relative media paths are relative to (``None``: leave them).
        source: name used at the start of error messages (usually the file name).
        check_files: also require every media path to exist on disk.

    Raises:
        ManifestError: one line naming the row (data rows from 1) and the column, for example
        ``manifest.csv: row 3, column 'caption': caption 2 is empty``.

    Example::

        clean = validate_manifest(pd.DataFrame({"id": ["a"], "split": ["train"], "caption": ["a chorale"]}))
    """
    if not isinstance(df, pd.DataFrame):
        raise ManifestError(f"{source}: a manifest must be a table (DataFrame), got {type(df).__name__}")
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise ManifestError(f"{source}: duplicate column names {dupes}")
    for col in REQUIRED_COLUMNS:
        if col not in columns:
            raise ManifestError(f"{source}: missing required column {col!r} (columns: {', '.join(columns)})")
    if not any(col in columns for col in MODALITY_COLUMNS):
        raise ManifestError(f"{source}: needs at least one of the columns 'audio', 'image', 'caption'")
    df = df.copy()
    df.columns = columns
    n = len(df)
    base = Path(base_dir) if base_dir is not None else None

    ids, splits = [], []
    media: dict[str, list[str | None]] = {col: [] for col in MEDIA_COLUMNS}
    captions: list[list[str]] = []
    first_row: dict[str, int] = {}
    get = {col: (df[col].tolist() if col in df.columns else [None] * n) for col in CORE_COLUMNS}
    for i in range(n):
        row = i + 1

        def fail(col: str, what: str, row: int = row) -> ManifestError:
            return ManifestError(f"{source}: row {row}, column {col!r}: {what}")

        item_id = _text_cell(get["id"][i], integral_floats=True)
        if not item_id:
            raise fail("id", "missing id")
        if item_id in first_row:
            raise fail("id", f"duplicate id {item_id!r} (first in row {first_row[item_id]})")
        first_row[item_id] = row
        split = _text_cell(get["split"][i])
        if not split:
            raise fail("split", "missing split")
        ids.append(item_id)
        splits.append(split)
        for col in MEDIA_COLUMNS:
            value = get[col][i]
            if _is_missing(value):
                media[col].append(None)
                continue
            if not isinstance(value, (str, os.PathLike)):
                raise fail(col, f"expected a file path, got {type(value).__name__}")
            value = os.fspath(value).strip()
            if not value:
                media[col].append(None)
                continue
            if "\n" in value or "\x00" in value:
                raise fail(col, "a path cannot contain line breaks or NUL characters")
            if base is not None and "://" not in value and not os.path.isabs(os.path.expanduser(value)):
                value = os.path.normpath(base / value)
            if check_files and "://" not in value and not os.path.isfile(value):
                raise fail(col, f"file not found: {value}")
            media[col].append(value)
        try:
            caps = _caption_cell(get["caption"][i])
        except ValueError as err:
            raise fail("caption", str(err)) from None
        captions.append(caps)
        if media["audio"][-1] is None and media["image"][-1] is None and not caps:
            raise ManifestError(
                f"{source}: row {row}: no audio, image or caption; an item needs at least one"
            )

    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["id"] = pd.Series(ids, dtype=object).astype(str) if n else pd.Series([], dtype=str)
    out["split"] = pd.Series(splits, dtype=object).astype(str) if n else pd.Series([], dtype=str)
    for col in MEDIA_COLUMNS:
        out[col] = pd.Series(media[col], dtype=object)
    out["caption"] = pd.Series(captions, dtype=object)
    for col in df.columns:
        if col not in CORE_COLUMNS:
            out[col] = df[col].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def iter_items(df: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """Rows of a manifest as plain dicts (``caption`` a list, missing media ``None``)."""
    yield from df.to_dict(orient="records")


def bar_alignment(row: Any) -> dict[str, np.ndarray] | None:
    """The bar alignment of a manifest row as arrays (one entry per bar), or None without one.

    ``bar_onsets``/``bar_ends`` as float64 seconds, ``bar_x0``/``bar_x1`` (and ``bar_y0``/``bar_y1``
    when present) as int64 pixels. Cells may be Parquet arrays, lists, or JSON lists (CSV). A row
    lacking any of onsets, ends, x0 or x1 has no alignment; inconsistent values raise ManifestError.

    Example::

        bars = bar_alignment(df.iloc[0])
        bars["bar_onsets"][2], bars["bar_x0"][2]   # third bar: its start in s, its left pixel column
    """
    def cell(name: str):
        try:
            value = row[name]
        except (KeyError, IndexError):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else None
            except json.JSONDecodeError:
                raise ManifestError(f"item {row['id']}: {name} is not a JSON list") from None
        if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and _is_missing(value)):
            return None
        return np.asarray(value)

    out: dict[str, np.ndarray] = {}
    for name in BAR_COLUMNS:
        value = cell(name)
        if value is None:
            if name in BAR_COLUMNS[:4]:
                return None
            continue
        out[name] = value.astype(np.float64 if name in ("bar_onsets", "bar_ends") else np.int64)
    n = len(out["bar_onsets"])
    if n == 0 or any(v.ndim != 1 or len(v) != n for v in out.values()):
        raise ManifestError(f"item {row['id']}: bar columns must be lists of one equal, non-zero length")
    if (np.any(out["bar_ends"] <= out["bar_onsets"]) or np.any(np.diff(out["bar_onsets"]) <= 0)
            or np.any(out["bar_x1"] <= out["bar_x0"])):
        raise ManifestError(f"item {row['id']}: bars must follow each other and have a length and width")
    return out


# --------------------------------------------------------------------------- views

VIEWS_FILE = "views.parquet"
TRAIN_VIEWS = ("audio_sf", "image_layout")  # the views of training items (the demo corpus)
_VIEW_BAR_COLUMNS = ("bar_x0", "bar_x1", "bar_y0", "bar_y1")


def read_views(manifest_path: str | os.PathLike) -> pd.DataFrame:
    """The extra renderings of a manifest's items: ``views.parquet`` beside the manifest.

    One row per view: ``id, split, view`` (``audio_sf``, ``image_layout``, ``image_other``,
    ``audio_unseen``), ``modality`` (``audio``/``image``), ``path`` (made absolute), what was
    drawn (``soundfont``; ``font, spacing_linear, spacing_non_linear, scale, title, systems``) and
    for images the bars' pixel boxes ``bar_x0, bar_x1, bar_y0, bar_y1`` (an audio view has the
    item's own bar onsets: it plays the same MIDI). An empty frame when there is no such file.

    Example::

        views = read_views("data/corpus/manifest.parquet")
        views[views.view == "image_other"]        # the test split's "another engraver" images
    """
    path = Path(manifest_path).resolve().parent / VIEWS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["id", "split", "view", "modality", "path"])
    df = pd.read_parquet(path)
    df["path"] = [str(path.parent / p) if p and not Path(p).is_absolute() else p for p in df["path"]]
    return df


def group_views(views: pd.DataFrame, names: Iterable[str] = TRAIN_VIEWS) -> dict[str, list[dict]]:
    """Views ``names`` of :func:`read_views` by item id (plain dicts, in the table's order)."""
    keep = views[views["view"].isin(list(names))] if len(views) else views
    out: dict[str, list[dict]] = {}
    for rec in keep.to_dict(orient="records"):
        out.setdefault(str(rec["id"]), []).append(rec)
    return out


def view_alignment(row: Any, view: dict | None = None) -> dict[str, np.ndarray] | None:
    """The bar alignment of an item's rendering: :func:`bar_alignment` of the manifest ``row``,
    with an image view's own pixel boxes in place of the main image's (None: the main one)."""
    if view is None or view.get("modality") != "image":
        return bar_alignment(row)
    merged = {name: _cell(row, name) for name in ("id", "bar_onsets", "bar_ends")}
    merged.update({name: view.get(name) for name in _VIEW_BAR_COLUMNS})
    return bar_alignment(merged)


def draw_view(row: Any, grouped: dict[str, list[dict]], modality: str, u: float) -> dict:
    """One rendering of item ``row`` in ``modality`` ("audio" or "image"), chosen by ``u`` in
    [0, 1) uniformly among the main file and the item's views of that modality (``grouped``:
    :func:`group_views`). Draw ``u`` from a generator seeded per (seed, step, item) to keep
    training process-count independent.

    Returns ``{"view": "main" or the view's name, "path", "bars"}`` (``bars``:
    :func:`view_alignment`, None without an alignment).

    Example::

        grouped = group_views(read_views(manifest))           # once
        pick = draw_view(df.iloc[i], grouped, "image", u)      # per sample
        img = load_image(pick["path"]); x0 = pick["bars"]["bar_x0"]
    """
    if modality not in MEDIA_COLUMNS:
        raise ValueError(f"modality must be one of {MEDIA_COLUMNS}, not {modality!r}")
    choices: list[dict | None] = [None]
    choices += [v for v in grouped.get(str(_cell(row, "id")), []) if v.get("modality") == modality]
    pick = choices[min(int(u * len(choices)), len(choices) - 1)]
    if pick is None:
        return {"view": "main", "path": _cell(row, modality), "bars": view_alignment(row)}
    return {"view": pick["view"], "path": pick["path"], "bars": view_alignment(row, pick)}


def _cell(row: Any, name: str) -> Any:
    try:
        return row[name]
    except (KeyError, IndexError):
        return None


# --------------------------------------------------------------------------- cells


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _text_cell(value: Any, *, integral_floats: bool = False) -> str:
    """A stripped string from a cell; '' when missing. Integral floats (3.0 from a NaN-holed int
    column) become '3' so ids stay stable across formats."""
    if _is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)) and integral_floats and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).strip()


def _caption_cell(value: Any) -> list[str]:
    """One cell of the caption column as a list of captions; ValueError says what is wrong."""
    if isinstance(value, np.ndarray):  # Parquet list columns come back as arrays
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) and _is_missing(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        # A JSON list of strings starts with '["' (or is '[]'); "[live] take" stays a plain caption.
        if _JSON_LIST_START.match(text):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"not a valid JSON list of captions ({err.msg} at char {err.pos})") from None
            if not isinstance(value, list):
                raise ValueError("expected a JSON list of captions")
        else:
            return [text]
    if not isinstance(value, list):
        raise ValueError(f"expected a caption string or a list of them, got {type(value).__name__}")
    out = []
    for j, cap in enumerate(value, start=1):
        if not isinstance(cap, str):
            raise ValueError(f"caption {j} is a {type(cap).__name__}, not a string")
        cap = cap.strip()
        if not cap:
            raise ValueError(f"caption {j} is empty")
        out.append(cap)
    return out


def _relative_to(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value or not os.path.isabs(value):
        return value
    try:
        return Path(value).relative_to(base).as_posix()
    except ValueError:
        return value


# --------------------------------------------------------------------------- formats


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            dtype={col: str for col in CORE_COLUMNS},
            keep_default_na=False,  # 'NA' or 'null' can be a real id or caption; only empty cells are missing
            na_values=[""],
            encoding="utf-8-sig",  # spreadsheets often write a byte-order mark
        )
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path.name}: the file is empty (no header row)") from None
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path.name}: not UTF-8 text (byte {err.start}); save the CSV as UTF-8") \
            from None
    except Exception as err:
        raise ManifestError(f"{path.name}: cannot parse CSV: {' '.join(str(err).split())}") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = read_jsonl(path, error=ManifestError, name=path.name)
    if not records:
        return pd.DataFrame(columns=list(CORE_COLUMNS))
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    # Built column by column as objects so that lists and dicts stay as they are.
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in columns})
    for col in frame.columns:
        if col not in CORE_COLUMNS:  # metadata: numbers back to numeric columns
            frame[col] = frame[col].infer_objects()
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as err:
        raise ManifestError(f"{path.name}: cannot read Parquet: {' '.join(str(err).split())[:200]}") from None
    df.attrs = {}
    return df


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    out = df.copy()
    out["caption"] = [json.dumps(c, ensure_ascii=False) for c in out["caption"]]
    for col in out.columns:
        if col in CORE_COLUMNS or out[col].dtype != object:
            continue
        out[col] = [json.dumps(v, ensure_ascii=False, default=_json_default)
                    if isinstance(v, (dict, list, tuple, np.ndarray)) else v for v in out[col]]
    out.to_csv(path, index=False, encoding="utf-8")


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    rows = ({k: _json_value(v) for k, v in record.items()} for record in df.to_dict(orient="records"))
    write_jsonl(rows, path, default=_json_default)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return str(value)  # anything else (dates, decimals, paths) as its text
