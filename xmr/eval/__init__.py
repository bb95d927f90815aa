"""Evaluation: ranking metrics equal to trec_eval's, protocols, comparisons, reports and plots.

Example::

    from xmr.eval import retrieval_metrics
    m = retrieval_metrics(query_vecs @ item_vecs.T, relevant, ks=(1, 5, 10))
    m["R@1"], m["MRR"], m["chance"]["R@1"], m["n_candidates"]
"""

from xmr.eval.metrics import (
    PerQuery,
    ScoreRows,
    chance_values,
    per_query_metrics,
    retrieval_metrics,
    summarize,
)
from xmr.eval.trec import evaluate_qrels, read_qrels, read_run, write_qrels, write_run

__all__ = [
    "PerQuery",
    "ScoreRows",
    "chance_values",
    "evaluate_qrels",
    "per_query_metrics",
    "read_qrels",
    "read_run",
    "retrieval_metrics",
    "summarize",
    "write_qrels",
    "write_run",
]
