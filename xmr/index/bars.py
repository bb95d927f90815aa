"""Where a result matches, in bars: the span of a result's score that best matches an audio query.

An item with a bar alignment (the manifest's ``bar_onsets``, ``bar_ends``, ``bar_x0``, ``bar_x1``
and, when present, ``bar_y0``, ``bar_y1``; :func:`xmr.data.manifest.bar_alignment`) is cut at its
bars into candidate spans, as training cuts aligned sub-excerpts (``data.span_*``): the columns
``bar_x0[first]..bar_x1[last]`` of its image at full height, or its audio from
``bar_onsets[first]`` to ``bar_ends[last]``. Each span is embedded by the model and scored against
the query's audio (every window of a long query); the best span is the match.

The candidate spans follow the query's length: from each bar, the shortest run of bars that lasts
as long as the query (a long query: as long as one window of it), plus one bar, so that a clip
that starts inside a bar and ends inside another fits in the span that starts at its first bar.
Without a known length, every run of 2 to 4 bars (the training spans) is a candidate.

Span vectors depend on the item only, not on the query: :class:`BarLocator` keeps them (least
recently used items dropped first), so a result shown again costs one matrix product.

Example::

    locator = BarLocator(model)
    match = locator.locate(query.bar_query(), row, "item.flac")   # the item's audio (via="audio")
    match.label, match.boxes   # 'bars 2–3', [(151, 112, 245, 140), (245, 112, 346, 140)]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

__all__ = ["DEFAULT_VIA", "BarLocator", "BarMatch", "BarQuery", "bars_in", "best_span", "candidate_spans",
           "crop_bars", "draw_bars"]

# Training's aligned sub-excerpts (data.span_min_bars..span_max_bars): the spans tried without a length.
DEFAULT_SPAN_BARS = (2, 4)
# A bar counts as sounding in a clip when the clip holds at least this much of it (seconds).
MIN_OVERLAP_SECONDS = 0.25
# Items whose span vectors a locator keeps.
CACHED_ITEMS = 2048
# What a locator scores the query against by default: the item's audio cut at its bars. An audio
# clip matches the same item's audio spans more surely than its score's (bench/clip_bars.py, 4 s
# clips of the demo's test items: the highlight holds the true bars for 85.8 % of the hits via the
# audio, 77.9 % via the image); the highlight is drawn on the image either way.
DEFAULT_VIA = "audio"
HIGHLIGHT_RGBA = (255, 196, 0, 90)   # the fill drawn over matched bars
OUTLINE_RGB = (214, 120, 0)


@dataclass(frozen=True)
class BarMatch:
    """The bars of an item that match a query best.

    Attributes:
        first: index of the first matched bar (0-based, into the item's bar alignment).
        last: index of the last matched bar (inclusive).
        n_bars: bars in the item.
        score: cosine between the query (its best window) and the span's embedding.
        onset: the span's start in the item's audio (seconds).
        end: the span's end (seconds).
        boxes: ``(x0, y0, x1, y1)`` pixel box of each matched bar in the item's image (``y0``/``y1``
            span the whole image height when the alignment has no vertical extent).
        via: what was scored against the query: the item's ``"image"`` or its ``"audio"``.
    """

    first: int
    last: int
    n_bars: int
    score: float
    onset: float
    end: float
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    via: str = "image"

    @property
    def label(self) -> str:
        """``"bars 2–3"`` (bars numbered from 1 within the item; ``"bar 4"`` for one)."""
        a, b = self.first + 1, self.last + 1
        return f"bar {a}" if a == b else f"bars {a}–{b}"

    def contains(self, first: int, last: int) -> bool:
        """Whether bars ``first..last`` all lie in the match."""
        return self.first <= first and last <= self.last

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "n_bars": self.n_bars, "score": self.score,
                "onset": self.onset, "end": self.end, "boxes": [list(b) for b in self.boxes],
                "via": self.via, "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BarMatch:
        return cls(first=int(data["first"]), last=int(data["last"]), n_bars=int(data["n_bars"]),
                   score=float(data["score"]), onset=float(data["onset"]), end=float(data["end"]),
                   boxes=[tuple(int(v) for v in b) for b in data.get("boxes", [])],
                   via=str(data.get("via", "image")))


@dataclass(frozen=True)
class BarQuery:
    """What an audio query brings to bar matching.

    Attributes:
        vectors: (Q, D) unit vectors: the clip's, or one per window of a long clip.
        seconds: how long each of them lasts (the clip, or the window), ``None`` when unknown.
    """

    vectors: np.ndarray
    seconds: float | None = None


def candidate_spans(onsets: Sequence[float], ends: Sequence[float], seconds: float | None, *,
                    extra_bars: int = 1, span_bars: tuple[int, int] = DEFAULT_SPAN_BARS
                    ) -> list[tuple[int, int]]:
    """Bar spans ``(first, last)`` (inclusive) to score against a query lasting ``seconds``.

    From each bar, the shortest run lasting at least ``seconds`` plus ``extra_bars`` bars (cut at
    the last bar; runs ending at the same bar after it kept once). Without ``seconds``, every run
    of ``span_bars[0]..span_bars[1]`` bars (or the whole item when it has fewer bars).

    Example:
        >>> candidate_spans([0, 2, 4, 6], [2, 4, 6, 8], 3.0)
        [(0, 2), (1, 3)]
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    n = len(onsets)
    if n == 0:
        return []
    if seconds is None:
        lo, hi = span_bars
        spans = [(k, k + m - 1) for m in range(max(lo, 1), min(hi, n) + 1) for k in range(n - m + 1)]
        return spans or [(0, n - 1)]
    spans: list[tuple[int, int]] = []
    for k in range(n):
        m = int(np.searchsorted(ends - onsets[k], float(seconds) - 1e-6))  # first m with ends[m]-on[k] ≥ s
        last = min(max(m, k) + int(extra_bars), n - 1)
        if spans and spans[-1][1] == n - 1 and last == n - 1:
            break  # every later start gives a sub-span of this one, ending at the last bar
        spans.append((k, last))
    return spans


def bars_in(onsets: Sequence[float], ends: Sequence[float], start: float, end: float, *,
            min_overlap: float = MIN_OVERLAP_SECONDS) -> tuple[int, int] | None:
    """The bars ``(first, last)`` that sound in ``[start, end)`` seconds: those the interval
    overlaps by at least ``min_overlap`` seconds (or by half the bar, for a shorter bar).

    Example:
        >>> bars_in([0, 2, 4], [2, 4, 6], 1.5, 4.1)
        (0, 1)
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    overlap = np.minimum(ends, end) - np.maximum(onsets, start)
    need = np.minimum(min_overlap, 0.5 * (ends - onsets))
    inside = np.flatnonzero(overlap >= need - 1e-9)
    return None if not len(inside) else (int(inside[0]), int(inside[-1]))


def best_span(query_vectors: np.ndarray, span_vectors: np.ndarray) -> tuple[int, float]:
    """Index and score of the span that scores highest against any of the query vectors."""
    q = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
    s = np.atleast_2d(np.asarray(span_vectors, dtype=np.float32))
    scores = (q @ s.T).max(axis=0)
    i = int(np.argmax(scores))
    return i, float(scores[i])


def crop_bars(image, bars: Mapping[str, np.ndarray], first: int, last: int):
    """Bars ``first..last`` of a PIL image: columns ``bar_x0[first]..bar_x1[last]``, full height
    (the cut :meth:`xmr.train.data.ItemStore.span_strip` makes for training)."""
    x0 = int(np.clip(bars["bar_x0"][first], 0, image.width - 1))
    x1 = int(np.clip(bars["bar_x1"][last], x0 + 1, image.width))
    return image.crop((x0, 0, x1, image.height))


def _boxes(bars: Mapping[str, np.ndarray], first: int, last: int, height: int | None
           ) -> list[tuple[int, int, int, int]]:
    out = []
    for b in range(first, last + 1):
        y0 = int(bars["bar_y0"][b]) if "bar_y0" in bars else 0
        y1 = int(bars["bar_y1"][b]) if "bar_y1" in bars else int(height or 0)
        out.append((int(bars["bar_x0"][b]), y0, int(bars["bar_x1"][b]), y1))
    return out


def draw_bars(image_path: str | Path, boxes: Sequence[Sequence[int]], out: str | Path, *,
              pad: int = 6) -> Path:
    """The score image with the matched bars highlighted (a translucent fill and an outline over
    each bar's box, ``pad`` pixels around it), written as PNG to ``out``."""
    from PIL import Image, ImageDraw

    from xmr.media.image import load_image

    out = Path(out)
    base = load_image(image_path, mode="RGB").convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width = max(2, round(base.height / 120))
    for x0, y0, x1, y1 in boxes:
        box = (max(x0 - 1, 0), max(y0 - pad, 0), min(x1 + 1, base.width - 1), min(y1 + pad, base.height - 1))
        draw.rectangle(box, fill=HIGHLIGHT_RGBA, outline=OUTLINE_RGB + (255,), width=width)
    # the fill goes under the notes: blend, then keep the darker of the two so ink stays black
    merged = Image.alpha_composite(base, layer).convert("RGB")
    ink = np.minimum(np.asarray(merged), np.asarray(base.convert("RGB")))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    Image.fromarray(ink).save(tmp)
    tmp.replace(out)
    return out


class BarLocator:
    """Finds the bars of a result that match an audio query best, keeping the span vectors.

    Args:
        model: the model that embedded the index.
        via: score the query against the item's ``"audio"`` cut at its bars (the default,
            :data:`DEFAULT_VIA`), or against its ``"image"`` cut at its bars (the score the
            highlight is drawn on, for items without audio).
        max_items: items whose span vectors are kept.
        extra_bars: bars added to the shortest run that lasts as long as the query.

    Thread-safe: the model only reads; the cache is guarded by a lock.
    """

    def __init__(self, model: XmrModel, *, via: str = DEFAULT_VIA, max_items: int = CACHED_ITEMS,
                 extra_bars: int = 1):
        if via not in ("image", "audio"):
            raise ValueError(f"bars are matched via the item's image or audio, not {via!r}")
        self.model = model
        self.via = via
        self.max_items = int(max_items)
        self.extra_bars = int(extra_bars)
        self._cache: OrderedDict[str, dict[tuple[int, int], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def span_vectors(self, item_id: str, bars: Mapping[str, np.ndarray], spans: Sequence[tuple[int, int]],
                     source: Callable[[], Any]) -> np.ndarray:
        """(S, D) embeddings of ``spans`` of an item, computed once per span (``source()`` gives the
        item's image or audio file, asked for only when a span is missing)."""
        key = str(item_id)
        with self._lock:
            known = self._cache.get(key, {})
            missing = [s for s in spans if s not in known]
        if missing:
            pieces = self._cut(bars, missing, source())
            vectors = self.model.encode(self.via, pieces)
            with self._lock:
                known = self._cache.setdefault(key, {})
                known.update({s: v for s, v in zip(missing, vectors, strict=True)})
                while len(self._cache) > self.max_items:
                    self._cache.popitem(last=False)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
        return np.stack([known[s] for s in spans])

    def _cut(self, bars: Mapping[str, np.ndarray], spans: Sequence[tuple[int, int]], path: Any) -> list[Any]:
        if self.via == "image":
            from xmr.media.image import load_image

            img = load_image(path)
            return [crop_bars(img, bars, a, b) for a, b in spans]
        from xmr.media.audio import load_audio

        sr = int(self.model.sample_rate)
        wave = load_audio(path, sample_rate=sr, max_seconds=None)
        out = []
        for a, b in spans:
            i0 = int(round(float(bars["bar_onsets"][a]) * sr))
            i1 = max(int(round(float(bars["bar_ends"][b]) * sr)), i0 + 1)
            piece = wave[i0:min(i1, len(wave))]
            out.append(piece if len(piece) else np.zeros(sr, np.float32))
        return out

    def locate(self, query: BarQuery, row: Mapping[str, Any], source: Callable[[], Any] | str | Path,
               *, image_height: int | None = None) -> BarMatch | None:
        """The best-matching bars of the item of manifest ``row`` (``None`` without a bar alignment).

        Args:
            query: the query's audio vectors and their length.
            row: the item's manifest row (its ``id`` and bar columns).
            source: the file scored (image or audio, by ``via``), or a callable giving it.
            image_height: the image's height, for boxes of an alignment without ``bar_y0``/``bar_y1``.
        """
        from xmr.data.manifest import bar_alignment

        bars = bar_alignment(row)
        if bars is None or query.vectors is None or not len(query.vectors):
            return None
        spans = candidate_spans(bars["bar_onsets"], bars["bar_ends"], query.seconds,
                                extra_bars=self.extra_bars)
        get = source if callable(source) else (lambda: source)
        vectors = self.span_vectors(str(row["id"]), bars, spans, get)
        i, score = best_span(query.vectors, vectors)
        first, last = spans[i]
        return BarMatch(first=first, last=last, n_bars=len(bars["bar_onsets"]), score=score,
                        onset=float(bars["bar_onsets"][first]), end=float(bars["bar_ends"][last]),
                        boxes=_boxes(bars, first, last, image_height), via=self.via)
