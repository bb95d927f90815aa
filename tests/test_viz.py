"""PCA of the shared space and the figures: checked against scikit-learn and plain loops."""

import numpy as np
import pytest

from xmr.errors import InputError
from xmr.viz import (
    PCABasis,
    fit_pca,
    interpolated_pr,
    pca_map_figure,
    pr_curve_figure,
    rank_cdf_figure,
    subsample_indices,
)


def _data(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    # anisotropic so that the axes are well separated
    return rng.normal(size=(n, d)) * np.linspace(3.0, 0.2, d)


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    x = _data()
    ours = fit_pca(x, n_components=3)
    ref = PCA(n_components=3, svd_solver="full").fit(x)
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-9)
    ours_t, ref_t = ours.transform(x), ref.transform(x)
    signs = np.sign((ours_t * ref_t).sum(axis=0))
    np.testing.assert_allclose(ours_t, ref_t * signs, atol=1e-9)
    # sign convention: the largest-magnitude coefficient of every axis is positive
    for axis in ours.components:
        assert axis[np.abs(axis).argmax()] > 0


def test_query_projection_uses_the_fitted_basis_and_roundtrips(tmp_path):
    x = _data()
    basis = fit_pca(x, n_components=2)
    q = x[7]
    np.testing.assert_allclose(basis.transform(q), basis.transform(x)[7:8])
    basis.save(tmp_path / "pca.npz")
    again = PCABasis.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(again.components, basis.components)
    assert again.n_fit == 300
    with pytest.raises(InputError, match="dimension"):
        basis.transform(np.zeros(5))


def test_pca_subsample_is_seeded_and_close_to_full_fit():
    x = _data(n=2000)
    a = fit_pca(x, n_components=2, max_fit=1000, seed=1)
    b = fit_pca(x, n_components=2, max_fit=1000, seed=1)
    np.testing.assert_array_equal(a.components, b.components)
    assert a.n_fit == 1000
    full = fit_pca(x, n_components=2)
    assert abs(float(a.components[0] @ full.components[0])) > 0.95
    idx = subsample_indices(10, 4, seed=3)
    assert len(idx) == 4 and len(set(idx)) == 4 and list(idx) == sorted(idx)
    assert list(subsample_indices(3, 10)) == [0, 1, 2]


def test_pca_rejects_bad_input():
    with pytest.raises(InputError):
        fit_pca(np.zeros((1, 4)))


@pytest.mark.parametrize("dims", [2, 3])
def test_map_figure_has_one_trace_per_group_and_a_query_marker(dims):
    x = _data(n=60)
    basis = fit_pca(x, n_components=dims)
    mods = ["audio"] * 20 + ["image"] * 20 + ["text"] * 20
    genre = ["reel", "chorale"] * 30
    fig = pca_map_figure(basis.transform(x), modalities=mods, hover=[f"item {i}" for i in range(60)],
                         basis=basis, color=genre, color_name="genre", query=basis.transform(x[0]))
    names = [t.name for t in fig.data]
    assert names[-1] == "your query"
    assert sorted(names[:-1]) == sorted(f"{g} · {m}" for g in ("reel", "chorale") for m in ("audio", "image",
                                                                                          "text"))
    assert sum(len(t.x) for t in fig.data[:-1]) == 60
    assert fig.data[-1].marker.symbol == ("star" if dims == 2 else "cross")
    axis_title = fig.layout.xaxis.title.text if dims == 2 else fig.layout.scene.xaxis.title.text
    assert f"{100 * basis.explained_variance_ratio[0]:.1f}%" in axis_title


def test_map_figure_merges_rare_categories():
    x = _data(n=100)
    basis = fit_pca(x, n_components=2)
    fig = pca_map_figure(basis.transform(x), modalities=["audio"] * 100, hover=[""] * 100, basis=basis,
                         color=[str(i % 40) for i in range(100)], color_name="key")
    assert len(fig.data) == 24
    assert any(t.name.startswith("other") for t in fig.data)


def test_rank_cdf_equals_direct_count():
    ranks = np.array([1, 1, 3, 7, 10, 2])
    fig = rank_cdf_figure({"audio→image": ranks}, n_candidates={"audio→image": 10})
    y = np.asarray(fig.data[0].y)
    for r in range(1, 11):
        assert y[r - 1] == pytest.approx((ranks <= r).mean())
    chance = np.asarray(fig.data[1].y)
    assert chance[4] == pytest.approx(0.5)


def _pr_reference(scores, relevant, levels):
    """Plain loops: interpolated precision at each recall level, averaged over queries."""
    per_query = []
    for s, rel in zip(scores, relevant, strict=True):
        if not rel.any():
            continue
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        points = []
        hits = 0
        for depth, i in enumerate(order, start=1):
            hits += bool(rel[i])
            points.append((hits / rel.sum(), hits / depth))
        per_query.append([max([p for r, p in points if r >= level - 1e-12], default=0.0) for level in levels])
    return np.mean(per_query, axis=0)


def test_interpolated_pr_matches_plain_loops_with_ties():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 5, size=(30, 25)).astype(float)  # many ties
    relevant = rng.random((30, 25)) < 0.2
    levels, precision = interpolated_pr(scores, relevant)
    np.testing.assert_allclose(precision, _pr_reference(scores, relevant, levels), atol=1e-12)
    fig = pr_curve_figure({"x": (levels, precision)})
    assert len(fig.data) == 1
