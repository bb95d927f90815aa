"""TREC qrels and run files, and their evaluation with trec_eval (through pytrec_eval).

Qrels lines are ``qid iter docno rel`` (``iter`` is ignored, written as 0); run lines are
``qid Q0 docno rank score run_name``. In memory both are pytrec_eval's nested dicts:
``{qid: {docno: grade}}`` and ``{qid: {docno: score}}``; a run may also come as
``{qid: [(docno, score), ...]}`` (:func:`as_run` turns it into the dict shape).

The one ordering of a run is trec_eval's: score descending, ties by docno descending
(:func:`ranked`). Every run written, pooled or scored here is taken in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmr.errors import InputError

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]
QRELS_FIELDS = ("qid", "iter", "docno", "rel")
RUN_FIELDS = ("qid", "Q0", "docno", "rank", "score", "run")
# One query's results in either shape: {docno: score} or [(docno, score), ...].
Docs = Mapping[str, float] | Sequence[tuple[str, float]]


def _measure_name(measure: str) -> str:
    """pytrec_eval's request form: ``P_10`` / ``P@10`` -> ``P.10``; ``map`` stays ``map``."""
    m = measure.replace("@", "_")
    for base in ("iprec_at_recall", "ndcg_cut", "map_cut", "success", "recall", "P", "ndcg_rel", "Rprec"):
        if m.startswith(base + "_") and m[len(base) + 1:].replace(".", "").isdigit():
            return f"{base}.{m[len(base) + 1:]}"
    return m


def evaluate_qrels(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Docs],
                   measures: Iterable[str]) -> dict[str, dict[str, float]]:
    """Evaluate a run against qrels with trec_eval's measures (pytrec_eval).

    Args:
        qrels: ``{qid: {docno: grade}}`` (grade >= 1 is relevant; trec_eval's default).
        run: ``{qid: {docno: score}}`` (or ``[(docno, score)]`` lists); trec_eval ranks by score
            descending, ties by docno descending.
        measures: trec_eval names such as ``"map"``, ``"recip_rank"``, ``"ndcg_cut_10"``,
            ``"P_10"``, ``"recall_10"``, ``"success_1"`` (``"ndcg_cut.10"`` works too).

    Returns:
        ``{qid: {measure: value}}`` for every query present in both qrels and run, with the
        measure keys as trec_eval prints them (``"P_10"``, ``"ndcg_cut_10"``).

    Example:
        >>> evaluate_qrels({"q": {"a": 1}}, {"q": {"a": 0.9, "b": 0.5}}, ["recip_rank", "P_1"])
        {'q': {'P_1': 1.0, 'recip_rank': 1.0}}
    """
    import pytrec_eval

    requested = {_measure_name(m) for m in measures}
    unknown = {m.split(".")[0] for m in requested} - set(pytrec_eval.supported_measures)
    if unknown:
        raise InputError(f"unknown trec_eval measure(s): {', '.join(sorted(unknown))}")
    q = {str(k): {str(d): int(g) for d, g in v.items()} for k, v in qrels.items()}
    r = as_run(run)
    result = pytrec_eval.RelevanceEvaluator(q, requested).evaluate(r)
    return {qid: dict(sorted(vals.items())) for qid, vals in result.items()}


def mean_over_queries(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average each measure over the queries (what trec_eval prints as ``all``)."""
    if not per_query:
        return {}
    keys = sorted({k for v in per_query.values() for k in v})
    return {k: float(np.mean([v[k] for v in per_query.values() if k in v])) for k in keys}


def judged_at(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Docs],
              k: int = 10) -> dict[str, int]:
    """Number of the top-``k`` results of each query that have a judgement (any grade).

    The run is ranked as trec_eval ranks it (score descending, docno descending), so unjudged
    results in the top k -- silently counted as non-relevant by every trec_eval measure -- show.
    """
    out = {}
    for qid, docs in run.items():
        top = ranked_docnos(docs)[:k]
        judged = qrels.get(qid, {})
        out[qid] = sum(1 for d in top if d in judged)
    return out


def ranked(docs: Docs) -> list[tuple[str, float]]:
    """One query's ``(docno, score)`` pairs in trec_eval's order: score descending, then docno descending.

    Example:
        >>> ranked({"a": 0.5, "b": 0.5, "c": 0.9})
        [('c', 0.9), ('b', 0.5), ('a', 0.5)]
    """
    pairs = docs.items() if isinstance(docs, Mapping) else docs
    return sorted(((str(d), float(s)) for d, s in pairs), key=lambda d: (d[1], d[0]), reverse=True)


def ranked_docnos(docs: Docs) -> list[str]:
    """Docnos in trec_eval's order (:func:`ranked`), each once (its best-scored occurrence)."""
    return list(dict.fromkeys(d for d, _ in ranked(docs)))


def as_run(run: Mapping[str, Docs]) -> Run:
    """A run in pytrec_eval's shape ``{qid: {docno: score}}``; a docno listed twice keeps its best score."""
    return {str(qid): {d: s for d, s in reversed(ranked(docs))} for qid, docs in run.items()}


def read_qrels(path) -> Qrels:
    """Read a TREC qrels file (``qid iter docno rel``; blank lines and ``#`` comments skipped).

    Example:
        >>> read_qrels("set.qrels")  # doctest: +SKIP
        {'q1': {'audio:bach_001': 3}}
    """
    qrels: Qrels = {}
    for qid, docno, grade in _records(path, "qrels", QRELS_FIELDS, "rel", int):
        qrels.setdefault(qid, {})[docno] = grade
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path) -> Path:
    """Write qrels as ``qid 0 docno rel`` lines, sorted by qid then docno."""
    path = Path(path)
    _check_tokens(qrels)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for qid in sorted(qrels):
            for doc in sorted(qrels[qid]):
                f.write(f"{qid} 0 {doc} {int(qrels[qid][doc])}\n")
    return path


def read_run(path) -> Run:
    """Read a TREC run file (``qid Q0 docno rank score run_name``); the rank column is ignored."""
    run: Run = {}
    for qid, docno, score in _records(path, "run", RUN_FIELDS, "score", float):
        run.setdefault(qid, {})[docno] = score
    return run


def write_run(run: Mapping[str, Docs], path, *, run_name: str = "xmr", depth: int | None = None) -> Path:
    """Write a run, each query's documents in trec_eval's order, ranks from 1 (top ``depth`` only).

    Args:
        run: ``{qid: {docno: score}}`` or ``{qid: [(docno, score)]}`` (a repeated docno keeps its
            best score).
        path: the run file (its folder is created).
        run_name: the last column (one word).
        depth: keep only the best ``depth`` documents of each query (all when None).

    Scores are written with 17 significant digits so that reading the file back gives the same
    floats (and therefore the same ties).

    Example:
        >>> write_run({"q1": {"audio:a": 0.5, "image:c": 0.9}}, "ckpt.run", run_name="ckpt")
        PosixPath('ckpt.run')
    """
    path = Path(path)
    run = as_run(run)
    _check_tokens(run)
    if not run_name or any(c.isspace() for c in run_name):
        raise InputError(f"run name {run_name!r} must be one word")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for qid in sorted(run):
            docs = ranked(run[qid])
            for rank, (doc, score) in enumerate(docs[:depth] if depth else docs, start=1):
                f.write(f"{qid} Q0 {doc} {rank} {score:.17g} {run_name}\n")
    return path


def tie_docnos(n: int, prefix: str = "d") -> list[str]:
    """Docnos for candidates 0..n-1 such that trec_eval's tie rule equals index-ascending.

    trec_eval breaks ties by docno descending, so candidate ``i`` is named with ``n - 1 - i``
    zero-padded: a lower index gets a larger name and wins the tie, as in :mod:`xmr.eval.metrics`.
    """
    width = len(str(max(n - 1, 0)))
    return [f"{prefix}{n - 1 - i:0{width}d}" for i in range(n)]


def run_from_scores(scores: np.ndarray, qids: Sequence[str], docnos: Sequence[str],
                    *, depth: int | None = None) -> Run:
    """Turn a (Q, N) score matrix into a run dict (top ``depth`` per query by our tie rule).

    Args:
        scores: (Q, N) similarities.
        qids: Q query ids.
        docnos: N document names (use :func:`tie_docnos` if ties must rank as retrieval_metrics does).
        depth: keep only the best ``depth`` documents per query (all when None).
    """
    scores = np.asarray(scores)
    if scores.shape != (len(qids), len(docnos)):
        raise InputError(
            f"scores shape {scores.shape} does not match {len(qids)} qids x {len(docnos)} docnos")
    run: Run = {}
    for qi, qid in enumerate(qids):
        row = scores[qi]
        order = np.argsort(-row, kind="stable")
        if depth is not None:
            order = order[:depth]
        run[str(qid)] = {str(docnos[j]): float(row[j]) for j in order}
    return run


def qrels_from_relevance(relevant: np.ndarray, qids: Sequence[str], docnos: Sequence[str]) -> Qrels:
    """Qrels of a (Q, N) boolean / grade matrix (only entries > 0 are written)."""
    relevant = np.asarray(relevant)
    qrels: Qrels = {}
    for qi, qid in enumerate(qids):
        cols = np.nonzero(relevant[qi])[0]
        if len(cols):
            qrels[str(qid)] = {str(docnos[j]): int(relevant[qi, j]) for j in cols}
    return qrels


def _records(
    path, kind: str, fields: tuple[str, ...], value: str, number: type
) -> Iterator[tuple[str, str, Any]]:
    """``(qid, docno, value)`` of each line of a qrels or run file (``fields`` its columns).

    Blank lines and ``#`` comments are skipped; a line with another number of fields, or a value
    that is not a ``number``, raises InputError naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    at = fields.index(value)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != len(fields):
                raise InputError(f"{path}:{lineno}: a {kind} line has {len(fields)} fields "
                                 f"({' '.join(fields)}), got {len(parts)}")
            try:
                parsed = number(parts[at])
            except ValueError:
                raise InputError(f"{path}:{lineno}: {value} {parts[at]!r} is not "
                                 f"{'an integer' if number is int else 'a number'}") from None
            yield parts[0], parts[2], parsed


def _check_tokens(table: Mapping[str, Mapping]) -> None:
    for qid, docs in table.items():
        for tok in (qid, *docs):
            if not str(tok) or any(c.isspace() for c in str(tok)):
                raise InputError(f"TREC ids must be non-empty and contain no spaces: {tok!r}")
