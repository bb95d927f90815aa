"""Comparing systems: paired significance tests and rank correlations between system rankings.

Two checkpoints scored on the same queries give two arrays of per-query values (``PerQuery.rr``,
``PerQuery.ap``, ...). :func:`paired_randomization_test` and :func:`paired_t_test` say whether the
difference of their means is larger than chance (Smucker, Allan and Carterette 2007 recommend the
randomization test for IR). :func:`rank_correlation` compares two orderings of several systems
(e.g. checkpoints ranked by an automatic metric and by nDCG on human labels) with Kendall's tau-b
and Spearman's rho (Khan et al., Sec. V).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from xmr.errors import InputError


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"paired tests need the same queries: {a.size} vs {b.size} values")
    keep = np.isfinite(a) & np.isfinite(b)  # queries without a relevant item carry NaN
    a, b = a[keep], b[keep]
    if a.size < 2:
        raise InputError("paired tests need at least two queries with values for both systems")
    return a, b


def paired_randomization_test(a, b, *, n_resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Two-sided paired randomization (sign-flip permutation) test of mean(a) - mean(b).

    Under the null hypothesis the two systems are exchangeable on each query, so each per-query
    difference keeps or flips its sign with probability 1/2. The p-value is the share of sign
    assignments whose mean difference is at least as extreme as the observed one. All ``2**n``
    assignments are enumerated when there are no more than ``n_resamples`` of them (an exact
    p-value); otherwise ``n_resamples`` random ones are drawn and ``p = (1 + hits) / (1 +
    n_resamples)``, which is never 0. Both conventions are scipy.stats.permutation_test's.

    Args:
        a, b: per-query values of the two systems on the same queries (NaN pairs are dropped).
        n_resamples: random sign assignments when the exact test is too large.
        seed: random seed of those assignments.

    Example:
        >>> paired_randomization_test([0.9, 0.8, 0.7, 0.95], [0.5, 0.4, 0.6, 0.5])["p_value"]
        0.125
    """
    a, b = _paired(a, b)
    d = a - b
    n = d.size
    observed = float(d.mean())
    exact = n < 63 and 2 ** n <= n_resamples
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
    stats = []
    for start in range(0, len(signs), 4096):
        stats.append(signs[start:start + 4096] @ d / n)
    stats = np.concatenate(stats)
    # A relative tolerance so that floating-point noise does not split exact ties.
    tol = 1e-12 * max(1.0, abs(observed))
    hits = int(np.count_nonzero(np.abs(stats) >= abs(observed) - tol))
    p = hits / len(stats) if exact else (hits + 1) / (n_resamples + 1)
    return {"statistic": observed, "p_value": float(min(1.0, p)), "n": int(n), "exact": bool(exact),
            "n_resamples": int(len(stats))}


def paired_t_test(a, b) -> dict[str, Any]:
    """Two-sided paired t-test of mean(a) - mean(b) (Student, n - 1 degrees of freedom).

    ``t = mean(d) / (sd(d) / sqrt(n))`` with ``d = a - b`` and the sample standard deviation;
    the p-value is ``2 * P(T_{n-1} > |t|)``. Identical pairs everywhere give t = 0, p = 1.

    Example:
        >>> round(paired_t_test([1.0, 2.0, 3.0, 4.0], [0.5, 2.0, 2.0, 3.0])["t"], 4)
        2.6112
    """
    from scipy.stats import t as student_t

    a, b = _paired(a, b)
    d = a - b
    n = d.size
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else float(np.sign(mean) * np.inf)
    else:
        t = mean / (sd / np.sqrt(n))
    p = float(2.0 * student_t.sf(abs(t), df=n - 1))
    return {"statistic": mean, "t": float(t), "p_value": min(1.0, p), "df": int(n - 1), "n": int(n)}


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    sx = x[order]
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def kendall_tau(x, y) -> float:
    """Kendall's tau-b between two scorings of the same systems (ties handled as tau-b).

    ``tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))`` with C, D the concordant and discordant
    pairs, ``n0 = n(n-1)/2`` and n1, n2 the pairs tied in x and in y.

    Example:
        >>> kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
        0.6666666666666666
    """
    x, y = _two_scorings(x, y)
    i, j = np.triu_indices(x.size, k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    n1, n2 = int(np.count_nonzero(sx == 0)), int(np.count_nonzero(sy == 0))
    denom = np.sqrt(float(n0 - n1) * float(n0 - n2))
    return float(np.sum(sx * sy) / denom) if denom > 0 else float("nan")


def spearman_rho(x, y) -> float:
    """Spearman's rho: Pearson correlation of the average ranks of x and y.

    Example:
        >>> spearman_rho([1, 2, 3, 4], [1, 3, 2, 4])
        0.8
    """
    x, y = _two_scorings(x, y)
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
    return float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")


def rank_correlation(x, y) -> dict[str, float]:
    """Kendall's tau-b and Spearman's rho between two scorings of the same systems."""
    return {"kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y), "n": len(np.ravel(x))}


def _two_scorings(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise InputError(
            f"rank correlation needs two scorings of the same >= 2 systems ({x.size} vs {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("rank correlation needs finite scores")
    return x, y


def compare_per_query(a, b, *, n_resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Both paired tests on two systems' per-query values, plus the two means.

    Example:
        >>> r = compare_per_query([1.0, 0.5, 0.25], [0.5, 0.5, 0.2])
        >>> sorted(r)
        ['mean_a', 'mean_b', 'n', 'randomization', 't_test']
    """
    a2, b2 = _paired(a, b)
    return {
        "mean_a": float(a2.mean()),
        "mean_b": float(b2.mean()),
        "n": int(a2.size),
        "randomization": paired_randomization_test(a2, b2, n_resamples=n_resamples, seed=seed),
        "t_test": paired_t_test(a2, b2),
    }
