"""Acceptance 4: agreement values against examples computed by hand (worked out in the comments)."""

import math

import numpy as np
import pytest

from xmr.labels import LabelStore
from xmr.labels.agreement import (
    RatingsTable,
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
)

A = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1]
B = [0, 1, 1, 1, 2, 3, 3, 2, 0, 0]


def test_cohen_kappa_by_hand():
    # Agreement on items 0, 2, 3, 4, 6, 8: p_o = 6/10. Both annotators' marginals are
    # (0.3, 0.3, 0.2, 0.2), so p_e = 0.09 + 0.09 + 0.04 + 0.04 = 0.26.
    # kappa = (0.6 - 0.26) / (1 - 0.26) = 0.34 / 0.74.
    assert cohen_kappa(A, B) == pytest.approx(0.34 / 0.74, abs=1e-12)
    # Linear weights |i - j| / 3: observed disagreement = (1 + 1 + 1 + 1) / 3 / 10 = 4/30;
    # expected = sum_ij p_i p_j |i - j| / 3 = 2 * (.09*1 + .06*2 + .06*3 + .06*1 + .06*2 + .04*1) / 3
    #          = 1.22 / 3; kappa_w = 1 - (4/30) / (1.22/3).
    assert cohen_kappa(A, B, weights="linear") == pytest.approx(1 - (4 / 30) / (1.22 / 3), abs=1e-12)
    assert cohen_kappa(A, A) == pytest.approx(1.0)


def test_fleiss_kappa_by_hand():
    # 3 items, 3 raters, 2 categories: P_i = 1, 1, (2*1)/(3*2) = 1/3 -> P_bar = 7/9;
    # p = (5/9, 4/9) -> P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40.
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1]]) == pytest.approx(22 / 40, abs=1e-12)
    # Varying numbers of raters (2, 2, 3): P_i = 1, 0, 1 -> P_bar = 2/3; p = (3/7, 4/7) -> P_e = 25/49;
    # kappa = (2/3 - 25/49) / (24/49) = 23/72. A lone rating carries no agreement and is left out.
    assert fleiss_kappa([[2, 0], [1, 1], [0, 3], [1, 0]]) == pytest.approx(23 / 72, abs=1e-12)


def test_fleiss_kappa_textbook_example():
    # The worked example usually quoted for Fleiss' kappa: 10 subjects, 14 raters, 5 categories,
    # P_bar = 0.378, P_e = 0.213, kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_equals_cohen_style_pi_for_two_raters():
    # With two raters Fleiss' kappa is Scott's pi: p_e from the pooled marginals.
    counts = RatingsTable(["a", "b"], [("q", str(i)) for i in range(10)], np.array([A, B], float)).counts()
    p_o = 6 / 10
    pooled = np.array([6, 6, 4, 4]) / 20
    pi = (p_o - (pooled**2).sum()) / (1 - (pooled**2).sum())
    assert fleiss_kappa(counts) == pytest.approx(pi, abs=1e-12)


def test_krippendorff_alpha_by_hand():
    # Two coders, units (0,0) (1,2) (2,2) (3,1), one unit graded by one coder only (left out).
    # Coincidences: o00 = 2, o12 = o21 = 1, o22 = 2, o13 = o31 = 1; n = (2, 2, 3, 1), n.. = 8.
    # Ordinal delta^2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2: d(0,1) = 4, d(0,2) = 20.25,
    # d(0,3) = 42.25, d(1,2) = 6.25, d(1,3) = 20.25, d(2,3) = 4.
    # D_o = (2*6.25 + 2*20.25) / 8 = 53/8.
    # D_e = 2 * (2*2*4 + 2*3*20.25 + 2*1*42.25 + 2*3*6.25 + 2*1*20.25 + 3*1*4) / (8*7) = 624/56.
    # alpha = 1 - (53/8) / (624/56) = 253/624.
    data = [[0, 1, 2, 3, np.nan], [0, 2, 2, 1, 3]]
    assert krippendorff_alpha(data, level="ordinal") == pytest.approx(253 / 624, abs=1e-9)
    # Nominal: D_o = 4/8, D_e = (64 - (4 + 4 + 9 + 1)) / 56 = 46/56 -> alpha = 1 - 28/46 = 18/46.
    assert krippendorff_alpha(data, level="nominal") == pytest.approx(18 / 46, abs=1e-9)
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))  # no variation: undefined


def test_report_from_the_store(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", sync=False)
    q = store.add_query(modality="text", text="x", qid="qa")
    q2 = store.add_query(modality="text", text="y", qid="qb")
    for i, (a, b) in enumerate(zip(A, B, strict=True)):
        query = q if i < 5 else q2
        store.record_judgement(query=query, item_id=f"i{i}", item_modality="audio", grade=a, annotator="ada")
        store.record_judgement(query=query, item_id=f"i{i}", item_modality="audio", grade=b, annotator="bob")
    store.record_judgement(query=q, item_id="lonely", item_modality="audio", grade=3, annotator="ada")
    rep = agreement_report(store)
    assert rep.n_items == 10 and rep.annotators == ["ada", "bob"]
    (pair,) = rep.cohen
    assert pair["n"] == 10 and pair["kappa"] == pytest.approx(0.34 / 0.74)
    assert rep.krippendorff_alpha_ordinal == pytest.approx(krippendorff_alpha([A, B]))
    # Per query: qa holds items 0-4 (one disagreement, spread 1), qb items 5-9 (three, spread 1).
    per_query = {r["qid"]: r for r in rep.per_query}
    assert (per_query["qa"]["shared"], per_query["qa"]["disagree"]) == (5, 1)
    qb = per_query["qb"]
    assert (qb["shared"], qb["disagree"], qb["max_spread"]) == (5, 3, 1)
    assert per_query["qb"]["mean_abs_diff"] == pytest.approx(3 / 5)
    assert {(r["qid"], r["docno"]) for r in rep.items} == {
        ("qa", "audio:i1"), ("qb", "audio:i5"), ("qb", "audio:i7"), ("qb", "audio:i9")}
    assert "Fleiss" in rep.format()
    store.close()
