"""The store's own evaluation of a run on an evaluation set (trec_eval's definitions, written out).

Measures per query, named as trec_eval / pytrec_eval name them so the two can be compared key by
key (``xmr.eval.evaluate_qrels`` on the exported qrels must give the same numbers):

- ``ndcg_cut_10`` — DCG@10 = Σ_{i=1..10} g_i / log2(i + 1) with g_i the grade of the result at
  rank i (0 when unjudged), divided by the same sum over the judged grades sorted descending;
- ``map`` — average precision over the whole run: Σ over relevant retrieved results of
  precision at their rank, divided by the number of relevant results (grade ≥ 1) in the qrels;
- ``P_10`` — relevant results in the top 10, over 10;
- ``recall_10`` — relevant results in the top 10, over all relevant results;
- ``judged_10`` — how many of the top 10 have a judgement at all: unjudged results count as
  irrelevant in the measures above, so a low number here says the measures understate the run.

The run is ordered as trec_eval orders it: score descending, ties by docno descending. Queries in
the set without any judgement, and queries the run did not answer, are left out of the means
(trec_eval's default). Written by hand on purpose: it is the reference the exported qrels are
checked against.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from xmr.labels.pooling import read_trec_run, sort_run_list
from xmr.labels.store import LabelStore

MEASURES = ("ndcg_cut_10", "map", "P_10", "recall_10", "judged_10")


@dataclasses.dataclass
class SetEvaluation:
    """Per-query measures and their means over the evaluated queries."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]

    def format(self) -> str:
        head = f"{'qid':<16}" + "".join(f"{m:>12}" for m in MEASURES)
        lines = [head]
        for qid in sorted(self.per_query):
            lines.append(f"{qid:<16}" + "".join(f"{self.per_query[qid][m]:>12.4f}" for m in MEASURES))
        lines.append(f"{'mean':<16}" + "".join(f"{self.mean.get(m, float('nan')):>12.4f}" for m in MEASURES))
        return "\n".join(lines)


def _as_ranked(docs: Mapping[str, float] | Sequence[tuple[str, float]]) -> list[str]:
    seen: set[str] = set()
    out = []
    for docno, _ in sort_run_list(docs):
        if docno not in seen:
            seen.add(docno)
            out.append(docno)
    return out


def query_measures(ranked: Sequence[str], qrels: Mapping[str, int], *, k: int = 10) -> dict[str, float]:
    """The measures of one ranked list of docnos against one query's qrels ``{docno: grade}``."""
    num_rel = sum(1 for g in qrels.values() if g >= 1)
    top = list(ranked[:k])
    gains = [max(qrels.get(d, 0), 0) for d in top]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits, precisions = 0, 0.0
    for rank, docno in enumerate(ranked, start=1):
        if qrels.get(docno, 0) >= 1:
            hits += 1
            precisions += hits / rank
    rel_top = sum(1 for d in top if qrels.get(d, 0) >= 1)
    return {
        f"ndcg_cut_{k}": dcg / idcg if idcg > 0 else 0.0,
        "map": precisions / num_rel if num_rel else 0.0,
        f"P_{k}": rel_top / k,
        f"recall_{k}": rel_top / num_rel if num_rel else 0.0,
        f"judged_{k}": float(sum(1 for d in top if d in qrels)),
    }


def evaluate_run(
    store: LabelStore,
    *,
    run: Mapping[str, Any] | str | os.PathLike,
    eval_set: str | None = None,
    aggregate: str = "mean",
) -> SetEvaluation:
    """Score a run on an evaluation set's current judgements.

    Args:
        store: the label store.
        run: ``{qid: {docno: score}}`` (pytrec_eval's shape), ``{qid: [(docno, score)]}``, or a
            TREC run file; docnos are ``"<modality>:<item_id>"``.
        eval_set: the set's queries (default: every judged query).
        aggregate: how several annotators' grades become one (``mean`` or ``majority``).

    Example:
        >>> evaluate_run(store, run="ckpt-a.run", eval_set="demo").mean["ndcg_cut_10"]
    """
    if isinstance(run, (str, os.PathLike)):
        run = read_trec_run(run)
    qrels = store.qrels(eval_set=eval_set, aggregate=aggregate)
    per_query = {
        qid: query_measures(_as_ranked(run[qid]), qrels[qid]) for qid in sorted(qrels) if qid in run
    }
    mean = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in MEASURES} if per_query else {}
    return SetEvaluation(per_query=per_query, mean=mean)
