"""JSON Lines: the one reader and writer of ``*.jsonl`` files (manifests, query files, sync logs).

Standard library only, so that every layer (the label store included) can use it cheaply.

Example::

    from xmr.data.jsonl import read_jsonl, write_jsonl
    write_jsonl([{"qid": "q1", "modality": "text", "text": "a waltz"}], "set.queries.jsonl")
    rows = read_jsonl("set.queries.jsonl")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from xmr.errors import InputError, XmrError

log = logging.getLogger(__name__)


def read_jsonl(
    path: str | os.PathLike,
    *,
    error: type[XmrError] = InputError,
    name: str | None = None,
    skip_invalid: bool = False,
) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line (a byte-order mark is ignored).

    Args:
        path: the file.
        error: the exception class raised for a malformed file (e.g. ``ManifestError``).
        name: how messages name the file (default: the path as given).
        skip_invalid: log and skip lines that are not JSON objects instead of raising (an
            append-only log whose last line a crash may have cut off).

    Raises:
        ``error`` naming the file, the line and the row (counted from 1): ``"f.jsonl: line 3 (row
        2): invalid JSON (...)"``, ``"... expected a JSON object"``, or ``"... not UTF-8 text"``.
    """
    path = Path(path)
    name = str(path) if name is None else name
    records: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{name}: line {line_no} (row {len(records) + 1})"
                try:
                    record = json.loads(line)
                    problem = None if isinstance(record, dict) else "expected a JSON object"
                except json.JSONDecodeError as err:
                    problem = f"invalid JSON ({err.msg})"
                if problem is None:
                    records.append(record)
                elif skip_invalid:
                    log.warning("%s: skipped, %s (cut off by a crash?)", where, problem)
                else:
                    raise error(f"{where}: {problem}") from None
    except UnicodeDecodeError as err:
        raise error(f"{name}: not UTF-8 text (byte {err.start})") from None
    return records


def jsonl_line(row: Mapping[str, Any], *, default: Callable[[Any], Any] | None = None) -> str:
    """One JSONL line (with its newline): compact, UTF-8 kept as is."""
    return json.dumps(row, ensure_ascii=False, default=default) + "\n"


def write_jsonl(
    rows: Iterable[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write one JSON object per line (the folder is created); ``default`` as in ``json.dumps``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(jsonl_line(row, default=default))
    return path


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses and ``to_dict()`` objects as dicts, tuples as
    lists, paths as strings, NumPy arrays as lists and NumPy/torch scalars as Python numbers."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy arrays and scalars, torch scalars
        return to_jsonable(value.tolist())
    return value
