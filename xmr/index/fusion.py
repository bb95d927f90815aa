"""Multi-modal queries: a weighted sum of normalised query embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmr.errors import InputError


def fuse_queries(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Combine several query embeddings (audio, image, text...) into one unit query vector.

    Each input is L2-normalised first, so that no modality dominates by the size of its vectors;
    then ``q = Σ w_i · v_i / ||v_i||`` and ``q / ||q||`` is returned. Weights may be negative
    ("like this score, but not this caption"). An input of shape (N, D) fuses row by row.

    Args:
        vectors: one (D,) or (N, D) array per input, all with the same shape.
        weights: one weight per input (default all 1.0).

    Returns a float32 (N, D) array of unit rows (N = 1 for (D,) inputs).

    Example:
        >>> q = fuse_queries([text_vec, image_vec], [1.0, 0.5])  # doctest: +SKIP
        >>> fuse_queries([np.array([3.0, 4.0])]).round(2).tolist()
        [[0.6, 0.8]]
    """
    if not len(vectors):
        raise InputError("a query needs at least one input (text, audio or image)")
    if weights is None:
        weights = [1.0] * len(vectors)
    if len(weights) != len(vectors):
        raise InputError(f"got {len(weights)} weights for {len(vectors)} query inputs; give one per input")
    arrays = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in vectors]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise InputError(f"query embeddings differ in shape: {[a.shape for a in arrays]}")
    total = np.zeros(shape, dtype=np.float64)
    for a, w in zip(arrays, weights, strict=True):
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        if np.any(norms == 0) or not np.all(np.isfinite(a)):
            raise InputError("a query embedding is zero or not finite")
        total += float(w) * a / norms
    norms = np.linalg.norm(total, axis=1, keepdims=True)
    if np.any(norms < 1e-9):
        raise InputError("the weighted query inputs cancel each other out; change the weights")
    return (total / norms).astype(np.float32)
