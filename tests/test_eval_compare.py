"""Paired significance tests and rank correlations, checked against scipy."""

import numpy as np
import pytest
from scipy import stats

from xmr.errors import InputError
from xmr.eval.compare import (
    compare_per_query,
    kendall_tau,
    paired_randomization_test,
    paired_t_test,
    rank_correlation,
    spearman_rho,
)


def _mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_randomization_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(11)
    b = a - 0.1 * rng.normal(size=11) + (0.05 if seed else 0.0)
    ref = stats.permutation_test((a, b), _mean_diff, permutation_type="samples", vectorized=True,
                                 n_resamples=10_000, alternative="two-sided")
    ours = paired_randomization_test(a, b, n_resamples=10_000)
    assert ours["exact"] and ours["n_resamples"] == 2 ** 11
    assert ours["p_value"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert ours["statistic"] == pytest.approx(ref.statistic, abs=1e-12)


def test_sampled_randomization_is_close_to_exact_and_never_zero():
    rng = np.random.default_rng(5)
    a = rng.random(16)
    b = a - 0.08 + 0.1 * rng.normal(size=16)
    exact = paired_randomization_test(a, b, n_resamples=2 ** 16)
    sampled = paired_randomization_test(a, b, n_resamples=4000, seed=1)
    assert exact["exact"] and not sampled["exact"]
    assert sampled["p_value"] == pytest.approx(exact["p_value"], abs=0.02)
    far = paired_randomization_test(np.ones(40), np.zeros(40), n_resamples=500)
    assert far["p_value"] == pytest.approx(1 / 501)


def test_known_small_case():
    # Four queries, all in favour of a: only the all-plus and all-minus sign sets are as extreme.
    r = paired_randomization_test([0.9, 0.8, 0.7, 0.95], [0.5, 0.4, 0.6, 0.5])
    assert r["p_value"] == pytest.approx(2 / 16)
    assert paired_randomization_test([1, 2, 3], [1, 2, 3])["p_value"] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_t_test_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(25), rng.random(25)
    ref = stats.ttest_rel(a, b)
    ours = paired_t_test(a, b)
    assert ours["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours["df"] == 24


def test_nan_queries_are_dropped_pairwise():
    a = np.array([0.5, np.nan, 1.0, 0.2, 0.3])
    b = np.array([0.4, 0.3, np.nan, 0.1, 0.35])
    r = compare_per_query(a, b)
    assert r["n"] == 3
    assert r["t_test"]["t"] == pytest.approx(stats.ttest_rel([0.5, 0.2, 0.3], [0.4, 0.1, 0.35]).statistic)


@pytest.mark.parametrize(
    "x, y",
    [
        ([0.61, 0.52, 0.48, 0.33, 0.30], [0.70, 0.41, 0.55, 0.32, 0.20]),
        ([1, 2, 2, 3, 4, 4, 4, 5], [2, 1, 3, 3, 5, 4, 4, 6]),  # ties in both
        ([3, 1, 2], [1, 2, 3]),
        ([0.1, 0.4, 0.4, 0.9, 0.2, 0.5], [0.2, 0.2, 0.6, 0.7, 0.1, 0.6]),
    ],
)
def test_rank_correlations_equal_scipy(x, y):
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    r = rank_correlation(x, y)
    assert r["n"] == len(x)
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert spearman_rho(x, -np.asarray(x, dtype=float)) == pytest.approx(-1.0)


def test_bad_inputs():
    with pytest.raises(InputError):
        paired_t_test([1, 2, 3], [1, 2])
    with pytest.raises(InputError):
        kendall_tau([1], [1])
    with pytest.raises(InputError):
        spearman_rho([1, np.nan], [1, 2])
