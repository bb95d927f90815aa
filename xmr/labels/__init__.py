"""Relevance judgements: the SQLite label store, pooling, agreement, export/import, evaluation sets.

Only the store is imported eagerly (it needs nothing beyond the standard library); agreement,
export and evaluation import numpy / pandas / scikit-learn and are loaded on first use.

Layers, each importing only those above it: :mod:`~xmr.labels.schema` (tables, rows, docnos) →
:mod:`~xmr.labels.db` (connections, transactions) and :mod:`~xmr.labels.media` →
:mod:`~xmr.labels.pooling` → :mod:`~xmr.labels.store` → :mod:`~xmr.labels.hub`,
:mod:`~xmr.labels.export`, :mod:`~xmr.labels.evaluate`, :mod:`~xmr.labels.agreement` → the CLI.
"""

from xmr.labels.schema import (
    MODALITIES,
    EvalSet,
    Judgement,
    PoolItem,
    Progress,
    Query,
    StoreBusyError,
    UndoResult,
    make_docno,
    parse_docno,
)
from xmr.labels.store import LabelStore

__all__ = [
    "MODALITIES",
    "EvalSet",
    "Judgement",
    "LabelStore",
    "PoolItem",
    "Progress",
    "Query",
    "StoreBusyError",
    "UndoResult",
    "agreement_report",
    "evaluate_run",
    "export_labels",
    "import_labels",
    "make_docno",
    "parse_docno",
]


def __getattr__(name: str):
    lazy = {
        "agreement_report": "xmr.labels.agreement",
        "evaluate_run": "xmr.labels.evaluate",
        "export_labels": "xmr.labels.export",
        "import_labels": "xmr.labels.export",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'xmr.labels' has no attribute {name!r}")
