"""The queries file of a human-labelled set: ``NAME.queries.jsonl`` beside ``NAME.qrels``.

One JSON object per query: ``qid``, ``modality`` (audio, image or text), ``text`` or ``media``
(a path relative to the JSONL file; ``path`` is accepted as an older spelling), and optionally
``source_item_id`` (the corpus item the query came from) and ``created_by``. Uploaded media are
copied into ``NAME.media/`` beside the file. ``xmr labels export`` writes it, ``xmr labels
import`` / ``add-queries`` and ``xmr eval --qrels`` read it.

Example::

    from xmr.eval.queries import find_queries_file, read_queries
    rows = read_queries(find_queries_file("labels/dev.qrels"))
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xmr import MODALITIES
from xmr.data.jsonl import read_jsonl, write_jsonl
from xmr.errors import InputError

SUFFIX = ".queries.jsonl"


def queries_path(path: str | os.PathLike) -> Path:
    """Where the queries of ``NAME.<ext>`` are written: ``NAME.queries.jsonl`` beside it."""
    return _candidates(Path(path))[0]


def find_queries_file(path: str | os.PathLike) -> Path:
    """The queries file that goes with a qrels (or CSV / Parquet) file.

    A per-annotator export (``NAME.<annotator>.qrels``) shares one ``NAME.queries.jsonl``: dotted
    suffixes are stripped one at a time until a queries file exists. When none does, the first
    candidate (:func:`queries_path`) is returned, so that the reader's error names the expected file.
    """
    candidates = _candidates(Path(path))
    return next((c for c in candidates if c.is_file()), candidates[0])


def _candidates(path: Path) -> list[Path]:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    out = [path.with_name(stem + SUFFIX)]
    while "." in stem:
        stem = stem.rsplit(".", 1)[0]
        out.append(path.with_name(stem + SUFFIX))
    return out


def read_queries(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check a queries file; ``media`` becomes an absolute path (relative to the file).

    Raises:
        InputError: the file is missing, a line is not a JSON object, or a query lacks a ``qid``
            or a modality among audio, image, text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"queries file not found: {path} (expected beside the qrels)")
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        if "qid" not in row or row.get("modality") not in MODALITIES:
            raise InputError(f"{path}: row {number}: a query needs a qid and a modality "
                             f"({', '.join(MODALITIES)})")
        media = row.get("media") or row.pop("path", None)
        if media:
            row["media"] = str((path.parent / media).resolve())
    return rows


def write_queries(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write a queries file; a row's ``media`` (a file path) is copied into ``NAME.media/``.

    Args:
        rows: ``{qid, modality, text | media, source_item_id, created_by}`` per query; ``media``
            is the path of the media file to copy (the written row points at the copy).
        path: the ``NAME.queries.jsonl`` to write.
    """
    path = Path(path)
    media_dir = path.with_name(path.name.removesuffix(SUFFIX) + ".media")
    out = []
    for row in rows:
        row = dict(row)
        if row.get("media") is not None:
            source = Path(row["media"])
            media_dir.mkdir(parents=True, exist_ok=True)
            target = media_dir / source.name
            if not target.exists():
                shutil.copy2(source, target)
            row["media"] = f"{media_dir.name}/{target.name}"
        out.append(row)
    return write_jsonl(out, path)
