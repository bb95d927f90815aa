"""Export and import of judgements: TREC qrels, CSV, Parquet, plus the queries they belong to.

Every export writes, beside its main file ``NAME.<ext>``:

- ``NAME.queries.jsonl`` — one JSON object per query: ``qid``, ``modality``, ``text`` or ``media``
  (a path relative to the JSONL file), ``source_item_id``, ``created_by``; ``xmr eval --qrels
  NAME.qrels`` reads it to run a checkpoint on the same queries;
- ``NAME.media/`` — copies of the uploaded query media the JSONL points at.

Formats:

- ``trec`` — qrels lines ``qid 0 docno grade`` with docnos ``"<modality>:<item_id>"``; several
  annotators' grades of one result become one by ``aggregate`` (``mean`` rounded half up,
  ``majority``), or ``per-annotator`` writes ``NAME.<annotator>.qrels`` per annotator and
  ``NAME.annotators.json`` mapping those files back to the annotators' names;
- ``csv`` / ``parquet`` — one row per current judgement with every field (annotator, time, model
  fingerprint, index version, note), or with ``mean`` / ``majority`` one row per result.

Import is the reverse: it creates the queries from ``NAME.queries.jsonl`` (keeping their qids) and
records the judgements with their original annotators and times.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xmr.errors import InputError
from xmr.eval.queries import find_queries_file, queries_path, read_queries, write_queries
from xmr.eval.trec import read_qrels, write_qrels  # one reader/writer of the TREC format
from xmr.labels.schema import Query, aggregate_grades, as_grade, make_docno, parse_docno
from xmr.labels.store import LabelStore

FORMATS = ("trec", "csv", "parquet")
AGGREGATES = ("mean", "majority", "per-annotator")
RAW_COLUMNS = [
    "qid", "query_modality", "docno", "item_modality", "item_id", "annotator", "grade", "at",
    "model_fingerprint", "index_version", "note",
]


def base_name(path: Path) -> Path:
    """``dir/NAME.qrels`` -> ``dir/NAME`` (the stem the side files are named after)."""
    return path.with_suffix("") if path.suffix else path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "annotator"


def _query_rows(queries: Sequence[Query]) -> list[dict[str, Any]]:
    """The store's queries as rows of the queries file (:func:`xmr.eval.queries.write_queries`)."""
    rows = []
    for q in queries:
        row: dict[str, Any] = {"qid": q.qid, "modality": q.modality}
        if q.text is not None:
            row["text"] = q.text
        else:
            row["media"] = q.media_path
        rows.append({**row, "source_item_id": q.source_item_id, "created_by": q.created_by})
    return rows


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"format must be one of {FORMATS}, not {fmt!r}")
        return fmt
    return {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "trec")


def export_labels(
    store: LabelStore,
    *,
    out: str | os.PathLike,
    format: str | None = None,
    aggregate: str | None = None,
    eval_set: str | None = None,
) -> list[Path]:
    """Export the current judgements (of one evaluation set, or all); returns the files written.

    Args:
        store: the label store.
        out: the main output file ``NAME.<ext>``.
        format: ``trec``, ``csv`` or ``parquet`` (default from the suffix, else ``trec``).
        aggregate: ``mean`` / ``majority`` (one grade per result) or ``per-annotator``; default
            ``mean`` for TREC and ``per-annotator`` (every judgement, one row each) for CSV/Parquet.
        eval_set: only the queries of this set.

    Example:
        >>> export_labels(store, out="labels/demo.qrels", eval_set="demo")
        [PosixPath('labels/demo.qrels'), PosixPath('labels/demo.queries.jsonl')]
    """
    out = Path(out)
    fmt = _format_of(out, format)
    aggregate = aggregate or ("mean" if fmt == "trec" else "per-annotator")
    if aggregate not in AGGREGATES:
        raise InputError(f"aggregate must be one of {AGGREGATES}, not {aggregate!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    judgements = store.judgements(eval_set=eval_set)
    if fmt == "trec":
        if aggregate == "per-annotator":
            by_annotator: dict[str, dict[str, dict[str, int]]] = {}
            for j in judgements:
                by_annotator.setdefault(j.annotator, {}).setdefault(j.qid, {})[j.docno] = j.grade
            names: dict[str, str] = {}
            for annotator, qrels in sorted(by_annotator.items()):
                fname = f"{base_name(out).name}.{_safe(annotator)}{out.suffix or '.qrels'}"
                n = 1
                while fname in names:
                    n += 1
                    fname = f"{base_name(out).name}.{_safe(annotator)}-{n}{out.suffix or '.qrels'}"
                names[fname] = annotator
                written.append(write_qrels(qrels, out.with_name(fname)))
            side = base_name(out).with_name(base_name(out).name + ".annotators.json")
            side.write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(side)
        else:
            written.append(write_qrels(store.qrels(eval_set=eval_set, aggregate=aggregate), out))
    else:
        import pandas as pd

        if aggregate == "per-annotator":
            modality = {q.qid: q.modality for q in store.list_queries()}
            rows = [{
                "qid": j.qid, "query_modality": modality[j.qid], "docno": j.docno,
                "item_modality": j.item_modality, "item_id": j.item_id, "annotator": j.annotator,
                "grade": j.grade, "at": j.at, "model_fingerprint": j.model_fingerprint,
                "index_version": j.index_version, "note": j.note,
            } for j in judgements]
            frame = pd.DataFrame(rows, columns=RAW_COLUMNS)
        else:
            grouped: dict[tuple[str, str], list[int]] = {}
            for j in judgements:
                grouped.setdefault((j.qid, j.docno), []).append(j.grade)
            frame = pd.DataFrame(
                [{"qid": q, "docno": d, "item_modality": parse_docno(d)[0], "item_id": parse_docno(d)[1],
                  "grade": aggregate_grades(g, aggregate), "n_annotators": len(g)}
                 for (q, d), g in sorted(grouped.items())],
                columns=["qid", "docno", "item_modality", "item_id", "grade", "n_annotators"],
            )
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
        written.append(out)
    queries = store.list_queries(eval_set=eval_set)
    if eval_set is None:
        judged = {j.qid for j in judgements}
        queries = [q for q in queries if q.qid in judged]
    written.append(write_queries(_query_rows(queries), queries_path(out)))
    return written


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    queries: int
    judgements: int
    skipped: int


def import_labels(
    store: LabelStore,
    *,
    path: str | os.PathLike,
    format: str | None = None,
    annotator: str | None = None,
    eval_set: str | None = None,
) -> ImportSummary:
    """Import an export back into a store: queries (from ``NAME.queries.jsonl``) and judgements.

    Args:
        store: the label store to add to.
        path: a qrels, CSV or Parquet file written by :func:`export_labels` (or by hand).
        format: ``trec``, ``csv`` or ``parquet`` (default from the suffix).
        annotator: the annotator of files that do not name one (aggregated qrels or rows); a
            per-annotator qrels file is mapped back through ``NAME.annotators.json``; else ``imported``.
        eval_set: also put the imported queries into this evaluation set.

    A judgement whose current grade is already in the store with the same time is skipped, so
    importing the same file twice changes nothing.

    Example:
        >>> import_labels(store, path="labels/demo.csv", eval_set="demo")
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    fmt = _format_of(path, format)
    qfile = find_queries_file(path)
    before = len(store.list_queries())
    if qfile.is_file():
        for row in read_queries(qfile):
            store.add_query_row(row)
    n_queries = len(store.list_queries()) - before
    rows: list[dict[str, Any]] = []
    if fmt == "trec":
        who = annotator
        if who is None:
            for side in path.parent.glob("*.annotators.json"):
                mapping = json.loads(side.read_text(encoding="utf-8"))
                if path.name in mapping:
                    who = mapping[path.name]
        for qid, docs in read_qrels(path).items():
            for docno, grade in docs.items():
                rows.append({"qid": qid, "docno": docno, "grade": grade, "annotator": who or "imported"})
    else:
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path)
        missing = {"qid", "docno", "grade"} - set(frame.columns)
        if missing:
            raise InputError(f"{path} lacks the column(s) {sorted(missing)}")
        for rec in frame.to_dict("records"):
            rec = {k: (None if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else v)
                   for k, v in rec.items()}
            rec["annotator"] = rec.get("annotator") or annotator or "imported"
            rows.append(rec)
    known = {q.qid for q in store.list_queries()}
    missing_q = sorted({str(r["qid"]) for r in rows} - known)
    if missing_q:
        raise InputError(
            f"{path} grades queries not in the store and not in a queries file beside it: {missing_q[:5]}"
        )
    current = {(j.qid, j.docno, j.annotator): j for j in store.judgements()}
    skipped = 0
    todo = []
    for r in rows:
        modality, item_id = parse_docno(str(r["docno"]))
        old = current.get((str(r["qid"]), make_docno(modality, item_id), str(r["annotator"])))
        same_time = r.get("at") is None or old is not None and old.at == r.get("at")
        if old is not None and old.grade == as_grade(r["grade"]) and same_time:
            skipped += 1
            continue
        todo.append(dict(
            query=str(r["qid"]), item_id=item_id, item_modality=modality, grade=as_grade(r["grade"]),
            annotator=str(r["annotator"]), model_fingerprint=r.get("model_fingerprint"),
            index_version=r.get("index_version"), note=r.get("note"), at=r.get("at"),
        ))
    n_judgements = len(store.record_judgements(todo)) if todo else 0
    if eval_set is not None:
        store.create_eval_set(eval_set, queries=sorted({str(r["qid"]) for r in rows}))
    return ImportSummary(queries=n_queries, judgements=n_judgements, skipped=skipped)
