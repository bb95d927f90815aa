"""The Explore tab's workflow: the PCA map of the shared space, over the retrieval service.

Example::

    explorer = Explorer(service)
    fig = explorer.map_figure(dims=2, color_by="genre", query=service.encode_query(text="a waltz"))
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.app.service import EncodedQuery, RetrievalService, safe_name
from xmr.errors import InputError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from xmr.viz import PCABasis

__all__ = ["COLOR_COLUMNS", "Explorer", "MapView"]

# Metadata columns offered for colouring the map, in this order when the manifest has them.
COLOR_COLUMNS = ("collection", "genre", "form", "instrument", "key", "mode", "meter", "composer", "split")


@dataclass(frozen=True)
class MapView:
    """The data behind the Explore plot (coordinates already projected)."""

    coords: np.ndarray
    modalities: list[str]
    hover: list[str]
    color: list[str] | None
    color_name: str
    query: np.ndarray | None


class Explorer:
    """The map of every indexed vector: one PCA basis (fitted once, cached on disk by checkpoint
    fingerprint) shared by every visitor, and seeded subsamples of it projected on demand.

    Args:
        service: the loaded model, indexes and manifest.
    """

    def __init__(self, service: RetrievalService):
        self.service = service
        self._lock = threading.Lock()
        self._pca: PCABasis | None = None
        self._map_data: tuple[np.ndarray, list[str], list[str]] | None = None

    def color_columns(self) -> list[str]:
        """Columns the map can be coloured by: ``modality`` and the manifest's metadata columns."""
        return ["modality"] + [c for c in COLOR_COLUMNS if c in self.service.manifest.columns]

    def _map_vectors(self) -> tuple[np.ndarray, list[str], list[str]]:
        """All indexed vectors (stacked over modalities), their modality and item id."""
        if self._map_data is None:
            with self._lock:
                if self._map_data is None:
                    vecs, mods, ids = [], [], []
                    for m in self.service.targets():
                        v, i = self.service.index.vectors(m)
                        vecs.append(v)
                        mods += [m] * len(i)
                        ids += list(i)
                    self._map_data = (np.concatenate(vecs, axis=0), mods, ids)
        return self._map_data

    def pca(self) -> PCABasis:
        """The PCA basis of the shared space, fitted once on the indexed vectors of all modalities
        (3 axes; the 2-D map uses the first two). Cached on disk by checkpoint fingerprint."""
        if self._pca is None:
            vecs, _, _ = self._map_vectors()
            with self._lock:
                if self._pca is None:
                    self._pca = self._load_or_fit_pca(vecs)
        return self._pca

    def _load_or_fit_pca(self, vecs: np.ndarray) -> PCABasis:
        from xmr.viz import PCABasis, fit_pca

        name = f"{safe_name(self.service.fingerprint)}-{len(vecs)}.npz"
        cache = Path(self.service.config.cache_dir) / "pca" / name
        basis = None
        if cache.exists():
            try:
                basis = PCABasis.load(cache)
            except Exception:  # a damaged cache is rebuilt, never fatal
                basis = None
        if basis is None or basis.mean.shape[0] != vecs.shape[1]:
            basis = fit_pca(vecs, n_components=3)
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                basis.save(cache)
            except OSError:  # a read-only cache only costs a refit next time
                pass
        return basis

    def map_view(self, *, dims: int = 2, color_by: str = "modality", max_points: int = 1500,
                 query: EncodedQuery | None = None, seed: int = 0) -> MapView:
        """Projected points of the map, a seeded subsample of at most ``max_points`` per modality,
        and the query projected with the same basis.

        Raises:
            InputError: an unknown colour column or ``dims`` other than 2 or 3.
        """
        from xmr.viz import subsample_indices

        if dims not in (2, 3):
            raise InputError(f"the map has 2 or 3 dimensions, not {dims}")
        if color_by not in self.color_columns():
            raise InputError(f"cannot colour by {color_by!r}; "
                             f"choose one of {', '.join(self.color_columns())}")
        service = self.service
        vecs, mods, ids = self._map_vectors()
        basis = self.pca()
        mods_arr = np.asarray(mods)
        keep = []
        for m in self.service.targets():
            where = np.flatnonzero(mods_arr == m)
            keep.append(where[subsample_indices(len(where), int(max_points), seed=seed)])
        sel = np.concatenate(keep) if keep else np.zeros(0, dtype=int)
        coords = basis.transform(vecs[sel])[:, :dims]
        sel_ids = [ids[i] for i in sel]
        sel_mods = [mods[i] for i in sel]
        hover = []
        colors: list[str] | None = [] if color_by != "modality" else None
        for item_id, m in zip(sel_ids, sel_mods, strict=True):
            row = service.row(item_id) if service.has_item(item_id) else {}
            cap = service.captions(item_id)[0] if row and service.captions(item_id) else ""
            extra = "" if color_by == "modality" else f"<br>{color_by}: {row.get(color_by, '')}"
            hover.append(f"<b>{item_id}</b> ({m}){extra}<br>{_short(cap, 90)}")
            if colors is not None:
                colors.append(str(row.get(color_by, "")))
        q = None if query is None else basis.transform(query.vector)[:, :dims]
        return MapView(coords=coords, modalities=sel_mods, hover=hover, color=colors, color_name=color_by,
                       query=q)

    def map_figure(self, **kwargs: Any) -> go.Figure:
        """The plotly figure of :meth:`map_view` (same arguments)."""
        from xmr.viz import pca_map_figure

        view = self.map_view(**kwargs)
        return pca_map_figure(view.coords, modalities=view.modalities, hover=view.hover, basis=self.pca(),
                              color=view.color, color_name=view.color_name, query=view.query)



def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
