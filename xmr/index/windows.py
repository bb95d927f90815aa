"""Long audio: fixed 50%-overlap windows, a mean-pooled track vector, and per-window vectors.

A track longer than the crop the audio tower sees is cut into fixed, deterministic windows with
50% overlap (``xmr.media.features.fixed_windows``); the track vector is the mean of the window
embeddings, as Nakatsuka et al. (2023, Sec. 4.1.2) do at test time ("the averaged value of the
embeddings of the cropped [spectrograms] ... iteratively cropped from the beginning ... with 50%
overlapping"), re-normalised for the inner-product index (the direction, hence every cosine
ranking, is that of the mean). The window vectors themselves go into a per-window index whose
metadata holds each window's item id and start time, so a search can say *where* in a track the
match is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xmr.index.ann import normalize

# Consecutive windows share half their samples (Nakatsuka et al., 2023, Sec. 4.1.2).
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class TrackEmbedding:
    """The embedding of one (possibly long) audio track.

    Attributes:
        vector: (D,) unit track vector, the normalised mean of the window vectors.
        windows: (W, D) unit window vectors, in time order.
        starts: (W,) window start times in seconds.
        ends: (W,) window end times in seconds.
    """

    vector: np.ndarray
    windows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def window_ranges(num_samples: int, *, sample_rate: int, window_seconds: float,
                  overlap: float = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """Sample ranges ``(start, end)`` of the fixed windows of a signal (one window if it is short).

    Example:
        >>> window_ranges(10 * 8000, sample_rate=8000, window_seconds=4.0)[:2]
        [(0, 32000), (16000, 48000)]
    """
    from xmr.media.features import fixed_windows

    window = max(1, int(round(float(window_seconds) * int(sample_rate))))
    return fixed_windows(max(int(num_samples), 1), window, overlap=overlap)


def pool_windows(window_vectors: np.ndarray) -> np.ndarray:
    """The track vector: mean of the window vectors (Nakatsuka et al., 2023, Sec. 4.1.2), L2-normalised."""
    return normalize(np.asarray(window_vectors, dtype=np.float32).mean(axis=0))[0]


def embed_tracks(
    encode: Callable[[list[np.ndarray]], np.ndarray],
    waves: Sequence[np.ndarray],
    *,
    sample_rate: int,
    window_seconds: float,
    overlap: float = WINDOW_OVERLAP,
) -> list[TrackEmbedding]:
    """Embed several tracks window by window with one call of ``encode`` over all their windows.

    Args:
        encode: maps a list of mono float32 waveforms to (N, D) unit vectors, e.g.
            ``lambda w: model.encode("audio", w)`` (what :func:`xmr.index.embed_audio` does).
        waves: mono waveforms at ``sample_rate``.
        sample_rate: their sample rate.
        window_seconds: the window length (the crop the audio tower was trained on).
        overlap: fraction shared by consecutive windows (0.5 as in Nakatsuka et al., 2023).

    The same waveform always gives the same windows, hence the same vectors.

    Example:
        >>> emb = embed_tracks(lambda w: model.encode("audio", w), [wave],  # doctest: +SKIP
        ...                    sample_rate=16000, window_seconds=3.0)[0]
        >>> emb.starts  # doctest: +SKIP
        array([0. , 1.5, 3. , ...])
    """
    pieces: list[np.ndarray] = []
    spans: list[list[tuple[int, int]]] = []
    for wave in waves:
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        ranges = window_ranges(len(wave), sample_rate=sample_rate, window_seconds=window_seconds,
                               overlap=overlap)
        spans.append(ranges)
        pieces += [wave[s:e] for s, e in ranges]
    vectors = normalize(encode(pieces)) if pieces else np.zeros((0, 0), np.float32)
    out, at = [], 0
    for ranges in spans:
        win = vectors[at : at + len(ranges)]
        at += len(ranges)
        out.append(
            TrackEmbedding(
                vector=pool_windows(win),
                windows=win,
                starts=np.array([s / sample_rate for s, _ in ranges], dtype=np.float64),
                ends=np.array([e / sample_rate for _, e in ranges], dtype=np.float64),
            )
        )
    return out
