"""Agreement between annotators: Cohen's κ, Fleiss' κ, Krippendorff's α, and where they disagree.

- **Cohen's κ** (Cohen 1960) for one pair of annotators over the results both graded,
  κ = (p_o − p_e) / (1 − p_e) with p_e from each annotator's own grade distribution; unweighted,
  or linearly / quadratically weighted for the ordinal grades (scikit-learn's implementation).
- **Fleiss' κ** (Fleiss 1971) for any number of annotators: with n_ij the number of annotators
  who gave item i grade j and n_i = Σ_j n_ij, P_i = Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1)),
  P̄ = mean_i P_i, p_j = Σ_i n_ij / Σ_i n_i, P̄_e = Σ_j p_j², κ = (P̄ − P̄_e) / (1 − P̄_e). Fleiss
  defines it for a constant number of raters per item; with varying n_i the same formulas are the
  usual generalisation (items graded by fewer than two annotators carry no agreement and are left
  out). Nominal: a 0 against a 3 counts the same as a 2 against a 3.
- **Krippendorff's α** (ordinal by default) from the ``krippendorff`` package: handles missing
  grades and any number of annotators, and weighs disagreements by their distance in rank.

All three are chance-corrected; they are undefined (NaN) when chance agreement is perfect, e.g.
when everybody gave every item the same grade.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from xmr.errors import InputError
from xmr.labels.schema import GRADES, Judgement
from xmr.labels.store import LabelStore


def cohen_kappa(a: Sequence[int], b: Sequence[int], *, weights: str | None = None) -> float:
    """Cohen's κ of two annotators' grades of the same items (``weights``: None, linear, quadratic).

    Example:
        >>> round(cohen_kappa([0, 1, 2, 3], [0, 1, 2, 2]), 4)
        0.6667
    """
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise InputError("Cohen's kappa needs two grade lists of the same length")
    if len(a) == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(cohen_kappa_score(list(a), list(b), labels=list(GRADES), weights=weights))


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' κ from an (items, categories) table of counts (see the module docstring).

    Example (Fleiss 1971 style: 3 items, 3 raters, 2 categories):
        >>> round(fleiss_kappa([[3, 0], [0, 3], [2, 1]]), 4)
        0.5500
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or (table < 0).any():
        raise InputError("Fleiss' kappa needs a 2-D table of non-negative counts")
    n_i = table.sum(axis=1)
    table, n_i = table[n_i >= 2], n_i[n_i >= 2]
    if len(table) == 0:
        return float("nan")
    p_i = (table * (table - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = table.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(reliability_data: Any, *, level: str = "ordinal") -> float:
    """Krippendorff's α of an (annotators, items) array of grades with NaN for missing.

    Example:
        >>> round(krippendorff_alpha([[1, 2, 3, np.nan], [1, 2, 2, 0]], level="nominal"), 4)
        0.5455
    """
    import krippendorff

    data = np.asarray(reliability_data, dtype=float)
    if data.ndim != 2:
        raise InputError("Krippendorff's alpha needs an (annotators, items) array")
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if pairable.sum() == 0:
        return float("nan")
    data = data[:, pairable]
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return float("nan")  # one value only: no variation to be reliable about
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                                    value_domain=list(GRADES)))


@dataclasses.dataclass
class RatingsTable:
    """Grades as an (annotators, items) matrix with NaN where an annotator did not grade an item."""

    annotators: list[str]
    items: list[tuple[str, str]]  # (qid, docno)
    grades: np.ndarray

    @classmethod
    def from_judgements(cls, judgements: Iterable[Judgement]) -> RatingsTable:
        js = list(judgements)
        annotators = sorted({j.annotator for j in js})
        items = sorted({(j.qid, j.docno) for j in js})
        a_index = {a: i for i, a in enumerate(annotators)}
        i_index = {it: i for i, it in enumerate(items)}
        grades = np.full((len(annotators), len(items)), np.nan)
        for j in js:
            grades[a_index[j.annotator], i_index[(j.qid, j.docno)]] = j.grade
        return cls(annotators=annotators, items=items, grades=grades)

    def counts(self) -> np.ndarray:
        """The (items, grades) count table Fleiss' κ needs."""
        out = np.zeros((len(self.items), len(GRADES)))
        for g in GRADES:
            out[:, g] = (self.grades == g).sum(axis=0)
        return out


@dataclasses.dataclass
class AgreementReport:
    """Agreement over the results graded by two or more annotators."""

    n_items: int
    annotators: list[str]
    fleiss_kappa: float
    krippendorff_alpha_ordinal: float
    krippendorff_alpha_nominal: float
    cohen: list[dict[str, Any]]  # per pair: a, b, n, kappa, kappa_linear, kappa_quadratic
    per_query: list[dict[str, Any]]  # see disagreements()
    items: list[dict[str, Any]]  # the results on which the annotators disagree

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """A plain-text report (the CLI prints it)."""

        def f(x: float) -> str:
            return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

        lines = [
            f"results graded by 2+ annotators: {self.n_items}  (annotators: {', '.join(self.annotators)})",
            f"Fleiss' kappa: {f(self.fleiss_kappa)}",
            f"Krippendorff's alpha (ordinal): {f(self.krippendorff_alpha_ordinal)}",
            f"Krippendorff's alpha (nominal): {f(self.krippendorff_alpha_nominal)}",
            "",
            "Cohen's kappa per pair:",
            f"{'a':<16} {'b':<16} {'n':>5} {'kappa':>7} {'linear':>7} {'quadr.':>7}",
        ]
        for c in self.cohen:
            lines.append(f"{c['a']:<16} {c['b']:<16} {c['n']:>5} {f(c['kappa']):>7} "
                         f"{f(c['kappa_linear']):>7} {f(c['kappa_quadratic']):>7}")
        lines += ["", "per query:",
                  f"{'qid':<16} {'shared':>6} {'disagree':>8} {'max spread':>10} {'mean |d|':>8}"]
        for q in self.per_query:
            lines.append(f"{q['qid']:<16} {q['shared']:>6} {q['disagree']:>8} {q['max_spread']:>10} "
                         f"{f(q['mean_abs_diff']):>8}")
        return "\n".join(lines)


def disagreements(table: RatingsTable) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-query summary and per-item list of disagreements.

    Returns:
        ``(per_query, items)``: per query the number of results graded by 2+ annotators
        (``shared``), how many of them got different grades (``disagree``), the largest spread
        (max − min grade) and the mean absolute difference over annotator pairs; and one row per
        disagreeing result with every annotator's grade.
    """
    per_query: dict[str, dict[str, Any]] = {}
    items = []
    for col, (qid, docno) in enumerate(table.items):
        graded = {a: int(g) for a, g in zip(table.annotators, table.grades[:, col], strict=True)
                  if not np.isnan(g)}
        if len(graded) < 2:
            continue
        row = per_query.setdefault(qid, {"qid": qid, "shared": 0, "disagree": 0, "max_spread": 0, "_d": []})
        values = list(graded.values())
        spread = max(values) - min(values)
        row["shared"] += 1
        row["_d"] += [abs(x - y) for x, y in itertools.combinations(values, 2)]
        row["max_spread"] = max(row["max_spread"], spread)
        if spread:
            row["disagree"] += 1
            items.append({"qid": qid, "docno": docno, "spread": spread, "grades": graded})
    out = []
    for row in per_query.values():
        d = row.pop("_d")
        row["mean_abs_diff"] = float(np.mean(d)) if d else float("nan")
        out.append(row)
    items.sort(key=lambda r: (-r["spread"], r["qid"], r["docno"]))
    return out, items


def agreement_report(store: LabelStore, *, eval_set: str | None = None) -> AgreementReport:
    """Agreement of the store's current judgements (optionally of one evaluation set).

    Example:
        >>> print(agreement_report(store).format())
    """
    table = RatingsTable.from_judgements(store.judgements(eval_set=eval_set))
    shared = (~np.isnan(table.grades)).sum(axis=0) >= 2 if table.items else np.zeros(0, bool)
    cohen = []
    for (i, a), (k, b) in itertools.combinations(enumerate(table.annotators), 2):
        both = ~np.isnan(table.grades[i]) & ~np.isnan(table.grades[k])
        ga, gb = table.grades[i, both].astype(int), table.grades[k, both].astype(int)
        cohen.append({
            "a": a, "b": b, "n": int(both.sum()),
            "kappa": cohen_kappa(ga, gb),
            "kappa_linear": cohen_kappa(ga, gb, weights="linear"),
            "kappa_quadratic": cohen_kappa(ga, gb, weights="quadratic"),
        })
    per_query, items = disagreements(table)
    return AgreementReport(
        n_items=int(shared.sum()),
        annotators=table.annotators,
        fleiss_kappa=fleiss_kappa(table.counts()) if table.items else float("nan"),
        krippendorff_alpha_ordinal=krippendorff_alpha(table.grades, level="ordinal") if table.items
        else float("nan"),
        krippendorff_alpha_nominal=krippendorff_alpha(table.grades, level="nominal") if table.items
        else float("nan"),
        cohen=cohen,
        per_query=per_query,
        items=items,
    )
