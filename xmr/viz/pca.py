"""PCA of the shared embedding space (all modalities in one basis) and its plotly figures.

The basis is fitted once on the indexed embeddings of every modality together, so that an audio
clip, its score image and its caption land near each other when the model has aligned them (seed
003, Fig. 9). A query is projected with the *same* fitted basis and drawn into the same map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmr.errors import InputError

MODALITY_SYMBOLS = {"audio": "circle", "image": "square", "text": "diamond"}
MODALITY_COLORS = {"audio": "#1f77b4", "image": "#ff7f0e", "text": "#2ca02c"}


@dataclass(frozen=True)
class PCABasis:
    """A fitted PCA: ``transform(x) = (x - mean) @ components.T``.

    Attributes:
        mean: (D,) mean of the fitted vectors.
        components: (n_components, D) orthonormal principal axes, largest variance first; the sign
            of each axis is fixed so that its largest-magnitude coefficient is positive (stable
            pictures across refits).
        explained_variance: (n_components,) variance along each axis.
        explained_variance_ratio: (n_components,) that variance over the total variance.
        n_fit: how many vectors the basis was fitted on.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n_fit: int

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Project (N, D) or (D,) vectors to (N, n_components) coordinates.

        Example:
            >>> basis = fit_pca(np.eye(4, dtype=np.float32), n_components=2)
            >>> basis.transform(np.ones(4)).shape
            (1, 2)
        """
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if x.shape[1] != self.mean.shape[0]:
            raise InputError(f"cannot project vectors of dimension {x.shape[1]} with a PCA basis "
                             f"fitted on dimension {self.mean.shape[0]}")
        return (x - self.mean) @ self.components.T

    def save(self, path: str | Path) -> None:
        """Write the basis as one ``.npz`` file."""
        np.savez(Path(path), mean=self.mean, components=self.components,
                 explained_variance=self.explained_variance,
                 explained_variance_ratio=self.explained_variance_ratio,
                 n_fit=np.asarray(self.n_fit))

    @classmethod
    def load(cls, path: str | Path) -> PCABasis:
        """Read a basis written by :meth:`save`."""
        with np.load(Path(path)) as z:
            return cls(mean=z["mean"], components=z["components"],
                       explained_variance=z["explained_variance"],
                       explained_variance_ratio=z["explained_variance_ratio"], n_fit=int(z["n_fit"]))

    def describe(self) -> str:
        """One line: the explained-variance share of each axis."""
        parts = [f"PC{i + 1} {100 * r:.1f}%" for i, r in enumerate(self.explained_variance_ratio)]
        return ", ".join(parts)


def fit_pca(vectors: np.ndarray, *, n_components: int = 3, max_fit: int = 50_000, seed: int = 0) -> PCABasis:
    """Fit a PCA basis by SVD of the centred data (an exact, not randomised, decomposition).

    Args:
        vectors: (N, D) embeddings, typically the indexed vectors of all modalities stacked.
        n_components: number of axes to keep (2 or 3 for the maps).
        max_fit: fit on a fixed random subsample of at most this many rows (the basis of a
            large index is well determined by a sample; the subsample is seeded, so refits agree).
        seed: seed of that subsample.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> basis = fit_pca(rng.normal(size=(100, 8)), n_components=3)
        >>> basis.components.shape, float(basis.explained_variance_ratio.sum()) < 1.0
        ((3, 8), True)
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"PCA needs a 2-D array with at least two rows, got shape {x.shape}")
    n_components = int(min(n_components, x.shape[0], x.shape[1]))
    if x.shape[0] > max_fit:
        rows = np.random.default_rng(seed).choice(x.shape[0], size=max_fit, replace=False)
        x = x[np.sort(rows)]
    mean = x.mean(axis=0)
    centred = x - mean
    # Economy SVD: centred = U S Vt; the rows of Vt are the principal axes.
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    variance = s**2 / max(x.shape[0] - 1, 1)
    total = float(variance.sum())
    comps = vt[:n_components]
    # Fix the sign ambiguity of SVD so that the same data always gives the same picture.
    flip = np.sign(comps[np.arange(n_components), np.abs(comps).argmax(axis=1)])
    comps = comps * flip[:, None]
    var = variance[:n_components]
    ratio = var / total if total > 0 else np.zeros_like(var)
    return PCABasis(mean=mean, components=comps, explained_variance=var,
                    explained_variance_ratio=ratio, n_fit=int(x.shape[0]))


def subsample_indices(n: int, max_points: int, *, seed: int = 0) -> np.ndarray:
    """Sorted, seeded subsample of ``range(n)`` of size ``min(n, max_points)``."""
    if max_points >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max(int(max_points), 0), replace=False))
