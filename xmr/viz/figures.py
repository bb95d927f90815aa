"""Plotly figures of the shared space and of retrieval quality (rank CDF, precision-recall).

Every function takes plain arrays and returns a ``plotly.graph_objects.Figure``; nothing here
knows about the app, so the same figures serve notebooks and reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xmr.errors import InputError
from xmr.viz.pca import MODALITY_COLORS, MODALITY_SYMBOLS, PCABasis

# A qualitative palette long enough for a metadata column with many values (keys, genres).
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8",
]
_MAX_CATEGORIES = 24


def pca_map_figure(
    coords: np.ndarray,
    *,
    modalities: Sequence[str],
    hover: Sequence[str],
    basis: PCABasis,
    color: Sequence[str] | None = None,
    color_name: str = "modality",
    query: np.ndarray | None = None,
    query_label: str = "your query",
    title: str = "The shared embedding space (PCA)",
):
    """Scatter of PCA coordinates, one marker shape per modality, coloured by modality or metadata.

    Args:
        coords: (N, 2) or (N, 3) coordinates from ``basis.transform``; 3 columns give a 3-D plot.
        modalities: (N,) the modality of each point (sets the marker shape).
        hover: (N,) hover text of each point.
        basis: the fitted basis (its explained variance labels the axes).
        color: (N,) category of each point for colouring; ``None`` colours by modality. Beyond 24
            categories the rarest are merged into "other" so that the legend stays readable.
        color_name: the legend title of the colour.
        query: (2,) / (3,) or (Q, 2|3) coordinates of the current query, drawn as a large star
            (trace name ``query_label``) on top of the map.

    Example:
        >>> import numpy as np
        >>> from xmr.viz.pca import fit_pca
        >>> x = np.random.default_rng(0).normal(size=(20, 8))
        >>> b = fit_pca(x, n_components=2)
        >>> fig = pca_map_figure(b.transform(x), modalities=["audio"] * 20, hover=[""] * 20, basis=b)
        >>> [t.name for t in fig.data]
        ['audio']
    """
    import plotly.graph_objects as go

    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise InputError(f"coordinates must have shape (N, 2) or (N, 3), got {coords.shape}")
    if len(modalities) != n or len(hover) != n or (color is not None and len(color) != n):
        raise InputError("coordinates, modalities, hover texts and colours must have the same length")
    dims = coords.shape[1]
    mods = np.asarray(modalities, dtype=object)
    if color is None:
        groups = mods
        color_of = dict(MODALITY_COLORS)
    else:
        groups = np.asarray(["" if c is None else str(c) for c in color], dtype=object)
        values, counts = np.unique(groups, return_counts=True)
        if len(values) > _MAX_CATEGORIES:
            keep = set(values[np.argsort(-counts, kind="stable")[: _MAX_CATEGORIES - 1]])
            groups = np.asarray([g if g in keep else "other" for g in groups], dtype=object)
        ordered = sorted(set(groups))
        color_of = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(ordered)}
    hover_arr = np.asarray(hover, dtype=object)

    fig = go.Figure()
    for group in sorted(set(groups)):
        for modality in sorted(set(mods)):
            sel = (groups == group) & (mods == modality)
            if not sel.any():
                continue
            name = group if color is None else f"{group} · {modality}"
            marker = {"size": 5 if dims == 2 else 3, "opacity": 0.7,
                      "color": color_of.get(group, "#7f7f7f"),
                      "symbol": MODALITY_SYMBOLS.get(modality, "circle")}
            common = {"mode": "markers", "name": name, "marker": marker, "text": hover_arr[sel],
                      "hovertemplate": "%{text}<extra></extra>", "legendgroup": group}
            if dims == 2:
                fig.add_trace(go.Scatter(x=coords[sel, 0], y=coords[sel, 1], **common))
            else:
                fig.add_trace(go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2], **common))
    if query is not None:
        q = np.atleast_2d(np.asarray(query, dtype=np.float64))[:, :dims]
        marker = {"size": 18 if dims == 2 else 8, "color": "#000000",
                  "symbol": "star" if dims == 2 else "cross", "line": {"width": 2, "color": "#ffd700"}}
        common = {"mode": "markers", "name": query_label, "marker": marker,
                  "hovertemplate": f"{query_label}<extra></extra>"}
        if dims == 2:
            fig.add_trace(go.Scatter(x=q[:, 0], y=q[:, 1], **common))
        else:
            fig.add_trace(go.Scatter3d(x=q[:, 0], y=q[:, 1], z=q[:, 2], **common))

    ratio = basis.explained_variance_ratio
    labels = [f"PC{i + 1} ({100 * ratio[i]:.1f}% of variance)" if i < len(ratio) else f"PC{i + 1}"
              for i in range(dims)]
    fig.update_layout(title=title, legend_title_text=color_name, height=620,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    if dims == 2:
        fig.update_xaxes(title_text=labels[0])
        fig.update_yaxes(title_text=labels[1])
    else:
        fig.update_layout(scene={"xaxis_title": labels[0], "yaxis_title": labels[1],
                                 "zaxis_title": labels[2]})
    return fig


def rank_cdf_figure(ranks: Mapping[str, np.ndarray], *, n_candidates: Mapping[str, int] | None = None,
                    max_rank: int | None = None, title: str = "Rank CDF (share of queries with the "
                    "relevant item at rank ≤ r)"):
    """Cumulative distribution of the 1-based rank of the first relevant item (Nakatsuka et al. 2023, Fig. 5).

    Args:
        ranks: direction name (e.g. ``"audio→image"``) → (Q,) 1-based ranks.
        n_candidates: direction → candidate-set size; adds the random-chance line ``r / N``.
        max_rank: right end of the x axis (default: the largest candidate-set size or rank).

    Example:
        >>> fig = rank_cdf_figure({"a→b": np.array([1, 2, 2, 5])}, n_candidates={"a→b": 10})
        >>> [float(v) for v in fig.data[0].y[:3]]
        [0.25, 0.75, 0.75]
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    top = max_rank
    if top is None:
        sizes = list((n_candidates or {}).values()) + [int(np.max(r)) for r in ranks.values() if len(r)]
        top = max(sizes) if sizes else 1
    xs = np.arange(1, top + 1)
    for i, (name, r) in enumerate(ranks.items()):
        r = np.asarray(r)
        if not len(r):
            continue
        # share of queries whose rank is <= x, for every x (searchsorted on the sorted ranks)
        cdf = np.searchsorted(np.sort(r), xs, side="right") / len(r)
        fig.add_trace(go.Scatter(x=xs, y=cdf, mode="lines", name=name,
                                 line={"color": _PALETTE[i % len(_PALETTE)]}))
    for i, (name, n) in enumerate((n_candidates or {}).items()):
        if name in ranks:
            fig.add_trace(go.Scatter(x=xs, y=np.minimum(xs / n, 1.0), mode="lines", name=f"chance ({name})",
                                     line={"dash": "dot", "color": _PALETTE[i % len(_PALETTE)], "width": 1},
                                     showlegend=i == 0 or len(set(n_candidates.values())) > 1))
    fig.update_layout(title=title, xaxis_title="rank r", yaxis_title="share of queries", height=420,
                      yaxis_range=[0, 1.02], margin={"l": 10, "r": 10, "t": 50, "b": 10})
    fig.update_xaxes(type="log")
    return fig


def pr_curve_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                    title: str = "Precision–recall (interpolated, averaged over queries)"):
    """Precision–recall curves, one per direction or system.

    Args:
        curves: name → (recall, precision) arrays of equal length.

    Example:
        >>> fig = pr_curve_figure({"a→b": (np.array([0.0, 1.0]), np.array([1.0, 0.5]))})
        >>> fig.data[0].name
        'a→b'
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, (recall, precision)) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=np.asarray(recall), y=np.asarray(precision), mode="lines", name=name,
                                 line={"color": _PALETTE[i % len(_PALETTE)]}))
    fig.update_layout(title=title, xaxis_title="recall", yaxis_title="precision", height=420,
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def interpolated_pr(scores: np.ndarray, relevant: np.ndarray, *,
                    levels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean 11-point-style interpolated precision at recall ``levels`` over queries.

    Interpolated precision at recall r is the maximum precision at any recall ≥ r (the TREC
    convention); ties in score are broken by item index, ascending, as in ``xmr.eval``.

    Args:
        scores: (Q, N) similarities.
        relevant: (Q, N) boolean relevance; queries without a relevant item are skipped.
        levels: recall levels (default 0.0, 0.05, ..., 1.0).

    Example:
        >>> r, p = interpolated_pr(np.array([[0.9, 0.1, 0.5]]), np.array([[True, False, True]]))
        >>> float(p[0]), float(p[-1])
        (1.0, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise InputError(f"scores {scores.shape} and relevant {relevant.shape} must be equal (Q, N) arrays")
    levels = np.linspace(0.0, 1.0, 21) if levels is None else np.asarray(levels, dtype=np.float64)
    out = []
    for s, rel in zip(scores, relevant, strict=True):
        n_rel = int(rel.sum())
        if n_rel == 0:
            continue
        order = np.lexsort((np.arange(len(s)), -s))  # score descending, then index ascending
        hits = np.cumsum(rel[order])
        precision = hits / np.arange(1, len(s) + 1)
        recall = hits / n_rel
        # running max from the right = best precision at recall >= r
        best = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, levels - 1e-12, side="left")  # 3/5 vs linspace 0.6 rounding
        out.append(np.where(idx < len(s), best[np.minimum(idx, len(s) - 1)], 0.0))
    if not out:
        return levels, np.zeros_like(levels)
    return levels, np.mean(out, axis=0)
