"""Queries: audio, image and text inputs turned into one vector of the shared space.

:func:`encode_query` is the one query path: the app's Search tab, ``xmr search`` and ``xmr eval``
all call it, so the same inputs give the same vector everywhere. Each input is embedded alone
(audio exactly as indexed tracks are, :func:`embed_audio`), then the inputs are fused by
:func:`xmr.index.fuse_queries` (each normalised first, weights may be negative).

Example::

    q = encode_query(model, text="a slow chorale", image="score.png", weights={"image": 0.5})
    hits = store.search(q.vector, targets=("audio",), k=10)[0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.errors import InputError
from xmr.index.fusion import fuse_queries
from xmr.index.windows import TrackEmbedding, embed_tracks

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

@dataclass(frozen=True)
class QueryLimits:
    """What a query input may be: the longest and shortest audio, the largest and most elongated
    image, the longest text.

    The caps are those of :mod:`xmr.media`; the app passes stricter ones for visitors. A clip
    under a second holds too little music to search with, and an image more than 25 times as
    long as it is wide (or wide as it is long) shrinks to a line in the model's input.
    """

    max_audio_seconds: float | None = 600.0
    min_audio_seconds: float | None = 1.0
    max_image_pixels: int = 50_000_000
    max_image_aspect: float | None = 25.0
    max_text_chars: int = 1000


@dataclass
class EncodedQuery:
    """A query turned into one vector of the shared space.

    Attributes:
        vector: (D,) float32, L2-normalised (the fused query when several inputs were given).
        parts: input name → (D,) embedding of each input that was used, in the order audio,
            image, text. The name is the modality (``"audio"``); further inputs of the same
            modality (``xmr search --text A --text B``) are ``"text#2"``, ``"text#3"``...
        weights: input name → weight of that input in the fusion.
        audio_windows: (W, D) embeddings of the windows of a long audio query (``None`` when the
            clip fits in one window); used to say which part of the clip matched a result.
        window_starts: (W,) start time in seconds of each of those windows.
        window_seconds: the window length.
        audio_seconds: the length of the query's audio, when it has one audio input.
        notes: things the user should know (truncated text, clip cut into windows, ...).
    """

    vector: np.ndarray
    parts: dict[str, np.ndarray]
    weights: dict[str, float]
    audio_windows: np.ndarray | None = None
    window_starts: np.ndarray | None = None
    window_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    audio_seconds: float | None = None

    @property
    def banks(self) -> dict[str, float]:
        """The inputs' weights keyed by the hubness bank that ranks them
        (:func:`xmr.index.hubness.bank_key`): ``{"audio:part": 1.0}`` for a clip of a few seconds,
        the input's name otherwise; what :meth:`IndexStore.search <xmr.index.IndexStore.search>`
        takes as ``query``."""
        from xmr.index.hubness import bank_key

        return {bank_key(name, self.audio_seconds if name == "audio" else None): w
                for name, w in self.weights.items()}

    @property
    def description(self) -> str:
        """E.g. ``"audio (0.5) + text (1)"``."""
        return " + ".join(f"{m} ({self.weights[m]:g})" for m in self.parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (vectors as lists) for per-visitor state and the API."""
        out: dict[str, Any] = {"vector": self.vector.tolist(), "weights": dict(self.weights),
                               "parts": {m: v.tolist() for m, v in self.parts.items()},
                               "notes": list(self.notes)}
        if self.audio_windows is not None:
            out["audio_windows"] = self.audio_windows.tolist()
            out["window_starts"] = self.window_starts.tolist() if self.window_starts is not None else None
            out["window_seconds"] = self.window_seconds
        if self.audio_seconds is not None:
            out["audio_seconds"] = self.audio_seconds
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncodedQuery:
        """Inverse of :meth:`to_dict`."""
        windows = data.get("audio_windows")
        starts = data.get("window_starts")
        return cls(vector=np.asarray(data["vector"], dtype=np.float32),
                   parts={m: np.asarray(v, dtype=np.float32) for m, v in data.get("parts", {}).items()},
                   weights={m: float(w) for m, w in data.get("weights", {}).items()},
                   audio_windows=None if windows is None else np.asarray(windows, dtype=np.float32),
                   window_starts=None if starts is None else np.asarray(starts, dtype=np.float64),
                   window_seconds=data.get("window_seconds"), notes=list(data.get("notes", [])),
                   audio_seconds=data.get("audio_seconds"))

    def bar_query(self):
        """The query's audio for :mod:`xmr.index.bars` (its windows when it was cut, else its one
        audio vector, with their length), or ``None`` without exactly one audio input."""
        from xmr.index.bars import BarQuery

        if self.audio_windows is not None and len(self.audio_windows):
            return BarQuery(np.asarray(self.audio_windows, np.float32), self.window_seconds)
        if "audio" not in self.parts or any(name.startswith("audio#") for name in self.parts):
            return None
        return BarQuery(np.asarray(self.parts["audio"], np.float32)[None], self.audio_seconds)


def embed_audio(model: XmrModel, waves: Sequence[np.ndarray], *, batch_size: int = 32,
                part_head: bool = True) -> list[TrackEmbedding]:
    """Track embeddings of waveforms at ``model.sample_rate``, exactly as the index embeds tracks.

    A clip longer than the model's window is cut into fixed 50%-overlap windows whose embeddings
    are averaged and re-normalised (Nakatsuka et al., 2023, Sec. 4.1.2; see :mod:`xmr.index.windows`).
    A clip of at most :data:`~xmr.models.config.PART_SECONDS` goes through the model's head for
    short clips where it has one (:meth:`~xmr.models.XmrModel.uses_part_head`), every other clip
    through the audio head; ``part_head=False`` sends every clip through the audio head.

    Example:
        >>> track = embed_audio(model, [wave])[0]  # doctest: +SKIP
        >>> track.vector.shape, track.starts[:2]  # doctest: +SKIP
    """
    sr = int(model.sample_rate)
    part_of = [part_head and model.uses_part_head(len(w) / sr) for w in waves]
    out: list[TrackEmbedding | None] = [None] * len(waves)
    for flag in sorted(set(part_of)):
        rows = [i for i, p in enumerate(part_of) if p == flag]
        tracks = embed_tracks(lambda w, flag=flag: model.encode("audio", w, batch_size=batch_size, part=flag),
                              [waves[i] for i in rows], sample_rate=sr,
                              window_seconds=float(model.audio_window_seconds))
        for i, track in zip(rows, tracks, strict=True):
            out[i] = track
    return out


def _inputs(value: Any) -> list[Any]:
    """One input, or a ``list`` of inputs, as a list (``None`` and blank texts left out)."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]


def encode_query(
    model: XmrModel,
    *,
    audio: Any = None,
    image: Any = None,
    text: str | Sequence[str] | None = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    limits: QueryLimits | None = None,
) -> EncodedQuery:
    """Encode any combination of audio clips, images and texts into one query vector.

    Each input is embedded alone, then the inputs are fused by :func:`xmr.index.fuse_queries`
    (each embedding normalised first, so no modality dominates; weights may be negative). An
    input whose weight is 0 is left out.

    Args:
        model: the model that built the index (``xmr.load_model``).
        audio: a path, bytes, a mono waveform at ``model.sample_rate``, ``(sample_rate, ndarray)``,
            or a list of these.
        image: a path, bytes, a PIL image or an array, or a list of these.
        text: a text or a list of texts (normalised; cut at ``limits.max_text_chars`` with a note).
        weights: modality → weight (default 1.0 each), or one weight per input in the order
            audio..., image..., text....
        limits: the largest inputs accepted (default :class:`QueryLimits`).

    Raises:
        InputError: nothing to search with, every weight 0, a modality the model has no encoder
            for, an input that cannot be decoded, or weighted inputs that cancel out.

    Example:
        >>> q = encode_query(model, text="a slow chorale", image="score.png",  # doctest: +SKIP
        ...                  weights={"image": 0.5})
        >>> q.description, q.vector.shape  # doctest: +SKIP
        ('image (0.5) + text (1)', (256,))
    """
    from xmr.media.audio import load_audio
    from xmr.media.image import load_image
    from xmr.media.text import normalize_text

    limits = limits or QueryLimits()
    given = [(m, m if n == 0 else f"{m}#{n + 1}", v)
             for m, value in (("audio", audio), ("image", image), ("text", text))
             for n, v in enumerate(_inputs(value))]
    if not given:
        raise InputError("the query is empty: give a music clip, an image or a text")
    if weights is None or isinstance(weights, Mapping):
        weight = {name: float((weights or {}).get(name, (weights or {}).get(m, 1.0))) for m, name, _ in given}
    else:
        if len(weights) != len(given):
            raise InputError(f"got {len(weights)} weights for {len(given)} query inputs; give one per input "
                             "in the order audio, image, text")
        weight = {name: float(w) for (_, name, _), w in zip(given, weights, strict=True)}
    used = [(m, name, v) for m, name, v in given if weight[name] != 0.0]
    if not used:
        raise InputError("every input of the query has weight 0; give at least one input a non-zero weight")
    for m in dict.fromkeys(m for m, _, _ in used):
        if m not in model.modalities:
            raise InputError(f"this model has no {m} encoder")

    parts: dict[str, np.ndarray] = {}
    notes: list[str] = []
    windowed: list[TrackEmbedding] = []
    audio_seconds: list[float] = []
    for m, name, value in used:
        if m == "text":
            norm = normalize_text(value, max_chars=limits.max_text_chars)
            if norm.truncated:
                notes.append(f"the text was cut to its first {limits.max_text_chars} characters")
            parts[name] = model.encode("text", [norm.text])[0]
        elif m == "image":
            img = load_image(value, max_pixels=limits.max_image_pixels, max_aspect=limits.max_image_aspect,
                             notes=notes)
            parts[name] = model.encode("image", [img], notes=notes)[0]  # notes: a score picture's reading
        else:
            wave = value if isinstance(value, np.ndarray) else load_audio(
                value, sample_rate=int(model.sample_rate), max_seconds=limits.max_audio_seconds,
                min_seconds=limits.min_audio_seconds, notes=notes)
            track = embed_audio(model, [wave])[0]
            audio_seconds.append(len(wave) / float(model.sample_rate))
            parts[name] = track.vector
            if len(track.windows) > 1:
                windowed.append(track)
                seconds = float(model.audio_window_seconds)
                notes.append(f"the clip was cut into {len(track.windows)} windows of {seconds:g} s "
                             "(50% overlap); its vector is their mean")
    vector = fuse_queries(list(parts.values()), [weight[name] for _, name, _ in used])[0]
    one_track = windowed[0] if len(windowed) == 1 and sum(m == "audio" for m, _, _ in used) == 1 else None
    return EncodedQuery(
        vector=vector, parts=parts, weights={name: weight[name] for _, name, _ in used},
        audio_windows=None if one_track is None else one_track.windows,
        window_starts=None if one_track is None else one_track.starts,
        window_seconds=None if one_track is None else float(model.audio_window_seconds), notes=notes,
        audio_seconds=audio_seconds[0] if len(audio_seconds) == 1 else None)
