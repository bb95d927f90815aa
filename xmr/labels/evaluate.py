"""A run scored on an evaluation set of the store: trec_eval's measures through pytrec_eval.

Measures per query, named as trec_eval names them (``xmr.eval.evaluate_qrels`` on the exported
qrels gives the same numbers, since it is the same code):

- ``ndcg_cut_10``, ``map``, ``P_10``, ``recall_10`` — trec_eval's definitions (a result is
  relevant with grade ≥ 1; nDCG uses the grades as gains);
- ``judged_10`` — how many of the top 10 have a judgement at all: unjudged results count as
  irrelevant in the measures above, so a low number here says the measures understate the run.

The run is ordered as trec_eval orders it (:func:`xmr.eval.trec.ranked`). Queries in the set
without any judgement, and queries the run did not answer, are left out of the means (trec_eval's
default).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

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
    from xmr.eval.trec import as_run, evaluate_qrels, judged_at, mean_over_queries, read_run

    run = read_run(run) if isinstance(run, (str, os.PathLike)) else as_run(run)
    qrels = store.qrels(eval_set=eval_set, aggregate=aggregate)
    run = {qid: docs for qid, docs in run.items() if qid in qrels}
    scored = evaluate_qrels(qrels, run, MEASURES[:-1])
    judged = judged_at(qrels, run, k=10)
    per_query = {qid: {**scored[qid], "judged_10": float(judged[qid])} for qid in sorted(scored)}
    return SetEvaluation(per_query=per_query, mean=mean_over_queries(per_query))
