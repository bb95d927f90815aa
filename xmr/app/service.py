"""The retrieval service behind the app: model + indexes + manifest + label store, created once.

Everything the UI does is a method here, with plain Python types in and out, so that the same
calls serve the Gradio app, the benchmark and tests without a browser. Nothing in this module
imports gradio; per-visitor state (the current query, the annotator) is passed in by the caller,
never kept on the service, which every visitor shares.

Example::

    service = RetrievalService.from_config(ServiceConfig.from_env())
    query = service.encode_query(text="a slow chorale for organ in a minor key")
    for hit in service.search(query, targets=("audio", "image"), k=5):
        print(hit.rank, hit.item_id, round(hit.score, 3), hit.caption)
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmr import MODALITIES
from xmr.errors import InputError, MissingAssetError, XmrError

# Metadata columns offered for colouring the map, in this order when the manifest has them.
COLOR_COLUMNS = ("collection", "genre", "form", "instrument", "key", "mode", "meter", "composer", "split")
# Metadata shown under a result, when present.
DETAIL_COLUMNS = ("collection", "composer", "title", "genre", "key", "meter", "tempo_term", "instrument",
                  "duration")


@dataclass(frozen=True)
class ServiceConfig:
    """Where the demo lives and the limits of what a visitor may send.

    Attributes:
        checkpoint: checkpoint folder (``xmr.load_model``).
        index: index folder (``xmr.index.IndexStore``).
        manifest: manifest file of the indexed collection.
        labels_db: SQLite file of the relevance labels.
        cache_dir: where media rendered on demand and cached figures/metrics go.
        max_audio_seconds: longest audio query accepted (checked from the header before decoding).
        max_image_pixels: largest image query accepted (decompression-bomb guard).
        max_text_chars: text queries are cut to this many characters (the caller is told).
        max_k: the largest number of results a visitor may ask for.
        compare_checkpoint: an optional second checkpoint for the Evaluate tab.
    """

    checkpoint: Path
    index: Path
    manifest: Path
    labels_db: Path
    cache_dir: Path
    max_audio_seconds: float = 120.0
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 1000
    max_k: int = 50
    compare_checkpoint: Path | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceConfig:
        """Paths from ``xmr.paths`` (``XMR_CHECKPOINT``, ``XMR_INDEX``, ``XMR_MANIFEST``, ``XMR_LABELS_DB``,
        ``XMR_CACHE_DIR``), limits from ``XMR_MAX_AUDIO_SECONDS`` and ``XMR_MAX_K``, and the optional
        ``XMR_COMPARE_CHECKPOINT``; keyword overrides win.
        """
        from xmr import paths

        compare = os.environ.get("XMR_COMPARE_CHECKPOINT")
        values: dict[str, Any] = {
            "checkpoint": paths.demo_checkpoint(),
            "index": paths.demo_index(),
            "manifest": paths.demo_manifest(),
            "labels_db": paths.labels_db(),
            "cache_dir": paths.cache_dir(),
            "max_audio_seconds": float(os.environ.get("XMR_MAX_AUDIO_SECONDS", cls.max_audio_seconds)),
            "max_k": int(os.environ.get("XMR_MAX_K", cls.max_k)),
            "compare_checkpoint": Path(compare).expanduser() if compare else None,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class EncodedQuery:
    """A query turned into one vector of the shared space.

    Attributes:
        vector: (D,) float32, L2-normalised (the fused query when several inputs were given).
        parts: modality → (D,) embedding of each input that was used.
        weights: modality → weight of each input in the fusion.
        audio_windows: (W, D) embeddings of the windows of a long audio query (``None`` when the
            clip fits in one window); used to say which part of the clip matched a result.
        window_starts: (W,) start time in seconds of each of those windows.
        notes: things the visitor should know (truncated text, clip cut into windows, ...).
    """

    vector: np.ndarray
    parts: dict[str, np.ndarray]
    weights: dict[str, float]
    audio_windows: np.ndarray | None = None
    window_starts: np.ndarray | None = None
    window_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        """E.g. ``"text (1.0) + audio (0.5)"``."""
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
                   window_seconds=data.get("window_seconds"), notes=list(data.get("notes", [])))


@dataclass
class Hit:
    """One search result.

    Attributes:
        rank: 1-based rank in the merged result list.
        item_id: the manifest id of the item.
        modality: the index (modality) the match was found in.
        score: cosine similarity of the query and the matched vector.
        caption: the item's first caption.
        captions: all captions of the item.
        details: selected metadata of the item (collection, key, instrument, ...).
        track_offset: where in the item's audio the match is, in seconds, when the index holds
            windows of long tracks.
        query_offset: the start, in seconds, of the window of a long audio *query* that matches this
            item best (``None`` for short or non-audio queries).
    """

    rank: int
    item_id: str
    modality: str
    score: float
    caption: str = ""
    captions: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    track_offset: float | None = None
    query_offset: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MapView:
    """The data behind the Explore plot (coordinates already projected)."""

    coords: np.ndarray
    modalities: list[str]
    hover: list[str]
    color: list[str] | None
    color_name: str
    query: np.ndarray | None


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _fmt_time(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def file_payload_path(payload: Any) -> Any:
    """What an app input hands over (a path, a ``{"path": ...}`` file payload, a data URL, or
    raw bytes/arrays) turned into something ``xmr.media`` decodes; ``None`` for an empty input."""
    if payload is None:
        return None
    if isinstance(payload, Mapping):
        url = payload.get("url") or ""
        if not payload.get("path") and isinstance(url, str) and url.startswith("data:"):
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except Exception as err:  # a malformed data URL is the visitor's input, not our bug
                raise InputError(f"cannot read the pasted data ({err})") from None
        path = payload.get("path")
        if not path:
            return None
        return path
    if isinstance(payload, (str, Path)) and not str(payload):
        return None
    return payload


class RetrievalService:
    """Model + indexes + manifest + label store behind one typed API.

    Build it once at start-up (:meth:`from_config`) and share it: its methods are safe to call
    from several threads (the model and FAISS are read-only; the label store serialises writes;
    lazy caches are built under a lock).

    Args:
        model: an ``XmrModel`` (``encode(modality, inputs)``, ``sample_rate``, ``audio_window_seconds``,
            ``fingerprint``, ``modalities``).
        index: an ``xmr.index.IndexStore`` built by that model.
        manifest: the manifest of the indexed items (``xmr.data.manifest.read_manifest``).
        config: paths and limits.
        labels: an ``xmr.labels.LabelStore`` (``None`` disables labelling).
    """

    def __init__(self, *, model: Any, index: Any, manifest: Any, config: ServiceConfig, labels: Any = None):
        self.model = model
        self.index = index
        self.manifest = manifest.reset_index(drop=True)
        self.config = config
        self.labels = labels
        self._rows = {str(i): n for n, i in enumerate(self.manifest["id"].astype(str))}
        self._lock = threading.Lock()
        self._media_locks: dict[tuple[str, str], threading.Lock] = {}
        self._media_cache: dict[tuple[str, str], Path] = {}
        self._pca = None
        self._map_data: tuple[np.ndarray, list[str], list[str]] | None = None
        self._eval_cache: dict[str, Any] | None = None
        self.load_seconds: float | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: ServiceConfig) -> RetrievalService:
        """Load the checkpoint, the indexes (checked against the checkpoint's fingerprint), the
        manifest and the label store.

        Raises:
            MissingAssetError: one of the files is not there (the message says how to build it).
            CheckpointMismatchError: the indexes were built by another checkpoint.
        """
        import xmr
        from xmr.data.manifest import read_manifest
        from xmr.index import IndexStore

        start = time.perf_counter()
        for what, path in (("checkpoint", config.checkpoint), ("index", config.index),
                           ("manifest", config.manifest)):
            if not Path(path).exists():
                raise MissingAssetError(f"the {what} {path} does not exist")
        model = xmr.load_model(config.checkpoint)
        index = IndexStore.load(config.index, fingerprint=model.fingerprint)
        manifest = read_manifest(config.manifest)
        labels = None
        try:
            from xmr.labels import LabelStore

            Path(config.labels_db).parent.mkdir(parents=True, exist_ok=True)
            labels = LabelStore(config.labels_db)
        except ImportError:  # the labels package is optional for search
            labels = None
        service = cls(model=model, index=index, manifest=manifest, config=config, labels=labels)
        service.load_seconds = time.perf_counter() - start
        return service

    def warm_up(self) -> None:
        """Run each encoder once so that the first visitor does not pay for lazy initialisation; safe to
        run in a background thread. (The map basis and the split metrics stay lazy: computing them
        here would compete with the first queries for the CPU of a small Space.)"""
        import logging

        try:
            for m in self.model.modalities:
                if m == "text":
                    self.model.encode("text", ["warm up"])
                elif m == "audio":
                    self.model.encode("audio", [np.zeros(int(self.model.sample_rate), np.float32)])
                elif m == "image":
                    from PIL import Image

                    self.model.encode("image", [Image.new("L", (64, 32), 255)])
        except Exception as err:  # a failed warm-up only costs the first visitor some time
            logging.getLogger(__name__).warning("warm-up failed: %s", err)

    # ------------------------------------------------------------------ items and media

    @property
    def fingerprint(self) -> str:
        return str(getattr(self.model, "fingerprint", ""))

    def targets(self) -> list[str]:
        """Modalities that have an index, in the canonical order."""
        have = set(_index_modalities(self.index))
        return [m for m in MODALITIES if m in have]

    def has_item(self, item_id: str) -> bool:
        return str(item_id) in self._rows

    def row(self, item_id: str) -> dict[str, Any]:
        """The manifest row of an item as a dict (``InputError`` for an unknown id)."""
        try:
            return self.manifest.iloc[self._rows[str(item_id)]].to_dict()
        except KeyError:
            raise InputError(f"unknown item id {item_id!r}") from None

    def captions(self, item_id: str) -> list[str]:
        """All captions of an item (the manifest's ``caption`` list)."""
        value = self.row(item_id).get("caption")
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [str(c) for c in list(value)]

    def details(self, item_id: str) -> dict[str, str]:
        """Selected metadata of an item, as strings, for display."""
        row = self.row(item_id)
        out = {}
        for col in DETAIL_COLUMNS:
            v = row.get(col)
            if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
                continue
            out[col] = f"{v:.1f} s" if col == "duration" and isinstance(v, (int, float)) else str(v)
        return out

    def media(self, item_id: str, modality: str) -> Path:
        """The item's audio or image file, rendered on demand into the cache the first time.

        Raises:
            InputError: unknown id or modality.
            XmrError: the item cannot be rendered (the message says why).
        """
        if modality not in ("audio", "image"):
            raise InputError(f"items have audio and image files, not {modality!r}")
        key = (str(item_id), modality)
        cached = self._media_cache.get(key)
        if cached is not None and cached.exists():
            return cached
        row = self.row(item_id)
        with self._lock:
            lock = self._media_locks.setdefault(key, threading.Lock())
        with lock:  # two visitors asking for the same clip render it once
            cached = self._media_cache.get(key)
            if cached is not None and cached.exists():
                return cached
            path = _media_path(row, modality, manifest_dir=Path(self.config.manifest).parent,
                               cache_dir=Path(self.config.cache_dir))
            self._media_cache[key] = path
            return path

    def media_if_ready(self, item_id: str, modality: str) -> Path | None:
        """The item's file when it is on disk already (shipped, or rendered before), without rendering."""
        cached = self._media_cache.get((str(item_id), modality))
        if cached is not None and cached.exists():
            return cached
        value = self.row(item_id).get(modality) if self.has_item(item_id) else None
        if isinstance(value, str) and value and Path(value).is_file():
            return Path(value)
        return None

    def examples(self, modality: str, n: int = 3, *, split: str = "test") -> list[str]:
        """Item ids of ``n`` example queries of a modality, spread evenly over a split (deterministic)."""
        df = self.manifest
        if "split" in df.columns and (df["split"] == split).any():
            df = df[df["split"] == split]
        if modality in df.columns:
            df = df[df[modality].notna()]
        ids = sorted(df["id"].astype(str))
        if not ids:
            return []
        n = min(n, len(ids))
        offset = {"audio": 0, "image": 1, "text": 2}.get(modality, 0)
        picks = [ids[(int(i * len(ids) / n) + offset) % len(ids)] for i in range(n)]
        return list(dict.fromkeys(picks))

    # ------------------------------------------------------------------ queries

    def encode_query(self, *, audio: Any = None, image: Any = None, text: str | None = None,
                     weights: Mapping[str, float] | None = None) -> EncodedQuery:
        """Encode any combination of an audio clip, an image and a text into one query vector.

        Each input is embedded alone, then the inputs are fused by ``xmr.index.fuse_queries``
        (each embedding normalised first, so no modality dominates; weights may be negative). An
        input whose weight is 0 is ignored.

        Args:
            audio: a path, bytes, a ``{"path": ...}`` payload or ``(sample_rate, ndarray)``.
            image: a path, bytes, a payload, a data URL payload, a PIL image or an array.
            text: free text (normalised; cut at ``max_text_chars`` with a note).
            weights: modality → weight (default 1.0 each).

        Raises:
            InputError: nothing to search with, or an input that cannot be decoded.
        """
        weights = {m: float((weights or {}).get(m, 1.0)) for m in MODALITIES}
        audio = file_payload_path(audio)
        image = file_payload_path(image)
        text = text.strip() if isinstance(text, str) else text
        given = {"audio": audio is not None, "image": image is not None, "text": bool(text)}
        if not any(given.values()):
            raise InputError("the query is empty: record or upload a music clip, add an image, "
                             "or type a text")
        used = [m for m in MODALITIES if given[m] and weights[m] != 0.0]
        if not used:
            raise InputError("every input of the query has weight 0; give at least one input a "
                             "non-zero weight")
        parts: dict[str, np.ndarray] = {}
        notes: list[str] = []
        windows = starts = None
        window_seconds = None
        for m in used:
            if m not in self.model.modalities:
                raise InputError(f"this model has no {m} encoder")
        if "text" in used:
            from xmr.media.text import normalize_text

            norm = normalize_text(text, max_chars=self.config.max_text_chars)
            if norm.truncated:
                notes.append(f"the text was cut to its first {self.config.max_text_chars} characters")
            parts["text"] = self.model.encode("text", [norm.text])[0]
        if "image" in used:
            from xmr.media.image import load_image

            img = load_image(image, max_pixels=self.config.max_image_pixels)
            parts["image"] = self.model.encode("image", [img])[0]
        if "audio" in used:
            vec, windows, starts, window_seconds = self._encode_audio(audio)
            parts["audio"] = vec
            if windows is not None:
                notes.append(f"the clip was cut into {len(windows)} windows of {window_seconds:g} s "
                             "(50% overlap); its vector is their mean")
        parts = {m: parts[m] for m in used}  # canonical order: audio, image, text
        if len(parts) == 1:
            vector = _normalise(next(iter(parts.values())) * np.sign(weights[used[0]]))
        else:
            from xmr.index import fuse_queries

            vector = np.asarray(fuse_queries([parts[m] for m in used], [weights[m] for m in used]),
                                dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(vector)) or float(np.linalg.norm(vector)) == 0.0:
            raise InputError("the weighted inputs cancel out; change the weights")
        return EncodedQuery(vector=vector, parts=parts, weights={m: weights[m] for m in used},
                            audio_windows=windows, window_starts=starts, window_seconds=window_seconds,
                            notes=notes)

    def _encode_audio(self, src: Any
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float | None]:
        """Track vector of a clip, exactly as the index embeds its tracks (``xmr.index.embed_tracks``):
        a clip longer than the model's window is cut into fixed 50%-overlap windows whose embeddings
        are averaged (Nakatsuka et al. 2023, Sec. 4.1.2); the window vectors are kept to say where a
        result matches."""
        from xmr.index import embed_tracks
        from xmr.media.audio import load_audio

        sr = int(self.model.sample_rate)
        wave = load_audio(src, sample_rate=sr, max_seconds=self.config.max_audio_seconds)
        seconds = float(self.model.audio_window_seconds)
        track = embed_tracks(lambda w: self.model.encode("audio", w), [wave], sample_rate=sr,
                             window_seconds=seconds)[0]
        if len(track.windows) <= 1:
            return track.vector, None, None, None
        return track.vector, track.windows, track.starts, seconds

    def encode_item(self, item_id: str, modality: str) -> EncodedQuery:
        """A query made from an indexed item's own audio, image or first caption ("use as query")."""
        if modality == "text":
            caps = self.captions(item_id)
            if not caps:
                raise InputError(f"item {item_id} has no caption")
            return self.encode_query(text=caps[0])
        path = self.media(item_id, modality)
        return self.encode_query(**{modality: str(path)})

    def search(self, query: EncodedQuery, *, targets: Sequence[str] = MODALITIES, k: int = 10) -> list[Hit]:
        """The ``k`` best items over the chosen target modalities, best first.

        Results from several target indexes are merged by score; an item found in several of them
        is listed once, at its best score (ties: modality order audio, image, text; then id).

        Raises:
            InputError: no target modality, an unknown one, or ``k`` out of range.
        """
        targets = [t for t in MODALITIES if t in set(targets or ())]
        if not targets:
            raise InputError("choose at least one target modality (audio, image or text) to search in")
        available = self.targets()
        missing = [t for t in targets if t not in available]
        if missing:
            raise InputError(f"there is no {'/'.join(missing)} index to search; "
                             f"available: {', '.join(available)}")
        k = int(k)
        if not 1 <= k <= self.config.max_k:
            raise InputError(f"k must be between 1 and {self.config.max_k}, got {k}")
        # each target may return the same items (an item's audio and its image), so ask for k per
        # target and keep every item once, at its best score
        raw = _index_search(self.index, query.vector[None, :], targets=tuple(targets), k=k * len(targets))
        best: dict[str, tuple[float, str, float | None]] = {}
        for item_id, modality, score, offset in raw[0]:
            prev = best.get(item_id)
            if prev is None or score > prev[0]:
                best[item_id] = (score, modality, offset)
        order = sorted(best.items(), key=lambda kv: (-kv[1][0], MODALITIES.index(kv[1][1]), kv[0]))[:k]
        query_offsets = self._query_window_offsets(query, [i for i, _ in order], targets) \
            if query.audio_windows is not None else {}
        hits = []
        for rank, (item_id, (score, modality, offset)) in enumerate(order, start=1):
            caps = self.captions(item_id) if self.has_item(item_id) else []
            hits.append(Hit(rank=rank, item_id=item_id, modality=modality, score=float(score),
                            caption=caps[0] if caps else "", captions=caps,
                            details=self.details(item_id) if self.has_item(item_id) else {},
                            track_offset=offset, query_offset=query_offsets.get(item_id)))
        return hits

    def _query_window_offsets(self, query: EncodedQuery, item_ids: list[str], targets: Sequence[str]
                              ) -> dict[str, float]:
        """For each result, the start of the query window that scores it highest (searching every
        window on its own, with a deeper list so that most results are found by some window)."""
        windows = query.audio_windows
        starts = query.window_starts
        depth = min(max(4 * len(item_ids), 20), self.config.max_k * 4)
        raw = _index_search(self.index, windows, targets=tuple(targets), k=depth)
        best: dict[str, tuple[float, float]] = {}
        wanted = set(item_ids)
        for w, rows in enumerate(raw):
            for item_id, _, score, _ in rows:
                if item_id in wanted and (item_id not in best or score > best[item_id][0]):
                    best[item_id] = (score, float(starts[w]))
        return {i: v[1] for i, v in best.items()}

    # ------------------------------------------------------------------ the map (Explore)

    def color_columns(self) -> list[str]:
        """Columns the map can be coloured by: ``modality`` and the manifest's metadata columns."""
        return ["modality"] + [c for c in COLOR_COLUMNS if c in self.manifest.columns]

    def _map_vectors(self) -> tuple[np.ndarray, list[str], list[str]]:
        """All indexed vectors (stacked over modalities), their modality and item id."""
        if self._map_data is None:
            with self._lock:
                if self._map_data is None:
                    vecs, mods, ids = [], [], []
                    for m in self.targets():
                        v, i = _index_vectors(self.index, m)
                        vecs.append(v)
                        mods += [m] * len(i)
                        ids += list(i)
                    self._map_data = (np.concatenate(vecs, axis=0), mods, ids)
        return self._map_data

    def pca(self):
        """The PCA basis of the shared space, fitted once on the indexed vectors of all modalities
        (3 axes; the 2-D map uses the first two). Cached on disk by checkpoint fingerprint."""
        if self._pca is None:
            from xmr.viz import PCABasis, fit_pca

            vecs, _, _ = self._map_vectors()
            with self._lock:
                if self._pca is None:
                    cache = Path(self.config.cache_dir) / "pca" / f"{_safe(self.fingerprint)}-{len(vecs)}.npz"
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
                    self._pca = basis
        return self._pca

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
        vecs, mods, ids = self._map_vectors()
        basis = self.pca()
        mods_arr = np.asarray(mods)
        keep = []
        for m in self.targets():
            where = np.flatnonzero(mods_arr == m)
            keep.append(where[subsample_indices(len(where), int(max_points), seed=seed)])
        sel = np.concatenate(keep) if keep else np.zeros(0, dtype=int)
        coords = basis.transform(vecs[sel])[:, :dims]
        sel_ids = [ids[i] for i in sel]
        sel_mods = [mods[i] for i in sel]
        hover = []
        colors: list[str] | None = [] if color_by != "modality" else None
        for item_id, m in zip(sel_ids, sel_mods, strict=True):
            row = self.row(item_id) if self.has_item(item_id) else {}
            cap = self.captions(item_id)[0] if row and self.captions(item_id) else ""
            extra = "" if color_by == "modality" else f"<br>{color_by}: {row.get(color_by, '')}"
            hover.append(f"<b>{item_id}</b> ({m}){extra}<br>{_short(cap, 90)}")
            if colors is not None:
                colors.append(str(row.get(color_by, "")))
        q = None if query is None else basis.transform(query.vector)[:, :dims]
        return MapView(coords=coords, modalities=sel_mods, hover=hover, color=colors, color_name=color_by,
                       query=q)

    def map_figure(self, **kwargs: Any):
        """The plotly figure of :meth:`map_view` (same arguments)."""
        from xmr.viz import pca_map_figure

        view = self.map_view(**kwargs)
        return pca_map_figure(view.coords, modalities=view.modalities, hover=view.hover, basis=self.pca(),
                              color=view.color, color_name=view.color_name, query=view.query)

    # ------------------------------------------------------------------ evaluation

    def test_split_report(self, *, split: str = "test", max_queries: int = 2000) -> dict[str, Any]:
        """Metrics of the loaded model on a split of the indexed collection, every direction.

        Uses the indexed vectors (no re-embedding); a query's relevant item is the same item in the
        other modality (one-to-one protocol). Computed once, then cached on disk by fingerprint.

        Returns:
            ``{"split", "directions": {"audio→image": {"metrics": {...}, "ranks": [...],
            "n_candidates": N, "n_queries": Q, "pr": [recall, precision]}, ...}}``
        """
        if self._eval_cache is not None:
            return self._eval_cache
        with self._lock:
            if self._eval_cache is not None:
                return self._eval_cache
            cache = Path(self.config.cache_dir) / "eval" / f"{_safe(self.fingerprint)}-{split}.json"
            if cache.exists():
                try:
                    self._eval_cache = json.loads(cache.read_text())
                    return self._eval_cache
                except (OSError, ValueError):
                    pass
            report = _split_report(self, split=split, max_queries=max_queries)
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp")
                tmp.write_text(json.dumps(report))
                tmp.replace(cache)
            except OSError:
                pass
            self._eval_cache = report
            return report


    # ------------------------------------------------------------------ labels

    def _store(self):
        if self.labels is None:
            raise XmrError("labelling is not available: the app has no label store")
        return self.labels

    @property
    def index_version(self) -> str | None:
        value = getattr(self.index, "version", None)
        return None if value is None else str(value() if callable(value) else value)

    @staticmethod
    def annotator_name(name: str | None) -> str:
        """A cleaned annotator name (``InputError`` when empty or over 64 characters)."""
        name = " ".join(str(name or "").split())
        if not name:
            raise InputError("type your name (annotator) first, or sign in")
        if len(name) > 64:
            raise InputError("an annotator name has at most 64 characters")
        return name

    def label_targets(self, query_modality: str) -> list[str]:
        """Where the results of a labelling query come from: every other indexed modality."""
        others = [t for t in self.targets() if t != query_modality]
        return others or self.targets()

    def ensure_demo_pool(self, *, n_queries: int = 12, depth: int = 10) -> str:
        """Create (once per checkpoint) a pool of text queries from the test split's content-only
        captions with this model's top ``depth`` results, in the evaluation set ``demo``; returns
        the pool's name."""
        from xmr.labels import make_docno

        store = self._store()
        name = f"demo-{_safe(self.fingerprint)[:12]}"
        if any(p.get("name") == name for p in store.list_pools()):
            return name
        with self._lock:
            if any(p.get("name") == name for p in store.list_pools()):
                return name
            run: dict[str, list[tuple[str, float]]] = {}
            for item_id in self.examples("text", n_queries):
                caps = self.captions(item_id)
                if not caps:
                    continue
                text = caps[-1]  # the content-only caption: no names to match on
                qid = store.add_query(modality="text", text=text, source_item_id=item_id, created_by="xmr")
                q = store.get_query(qid)
                hits = self.search(self.encode_query(text=text), targets=self.label_targets("text"), k=depth)
                run[q.qid] = [(make_docno(h.modality, h.item_id), h.score) for h in hits]
            if not run:
                raise XmrError("the collection has no captioned test items to make labelling queries from")
            try:
                store.add_pool(name, runs={f"model-{_safe(self.fingerprint)[:12]}": run}, depth=depth,
                               eval_set="demo")
            except XmrError:
                if not any(p.get("name") == name for p in store.list_pools()):
                    raise
        return name

    def label_search(self, state: Mapping[str, Any] | None, *, annotator: str) -> int:
        """Add a visitor's current single-input search as a labelling query whose results are pooled
        for grading (evaluation set ``searches``); returns the query's id."""
        from xmr.labels import make_docno

        store = self._store()
        if not state or not state.get("hits"):
            raise InputError("run a search first, then choose “current search” to grade its results")
        inputs = state.get("inputs") or {}
        given = [m for m in MODALITIES if inputs.get(m)]
        if len(given) != 1:
            raise InputError("only a search with a single input (audio, image or text) can be labelled")
        m = given[0]
        query_id = store.add_query(modality=m, text=inputs[m] if m == "text" else None,
                                   media=None if m == "text" else inputs[m], created_by=annotator)
        q = store.get_query(query_id)
        name = f"search-{q.qid}-{_safe(self.fingerprint)[:12]}"
        if not any(p.get("name") == name for p in store.list_pools()):
            run = {q.qid: [(make_docno(h["modality"], h["item_id"]), float(h["score"]))
                           for h in state["hits"]]}
            try:
                store.add_pool(name, runs={f"model-{_safe(self.fingerprint)[:12]}": run},
                               depth=len(state["hits"]), eval_set="searches")
            except XmrError:
                if not any(p.get("name") == name for p in store.list_pools()):
                    raise
        return query_id

    def _task(self, *, query_id: int, item_id: str, item_modality: str, best_rank: int | None,
              pool: str | None) -> dict[str, Any]:
        q = self._store().get_query(query_id)
        caps = self.captions(item_id) if self.has_item(item_id) else []
        return {"query_id": q.id, "qid": q.qid, "query_modality": q.modality, "query_text": q.text,
                "query_media": str(q.media_path) if q.media_path else None, "item_id": item_id,
                "item_modality": item_modality, "best_rank": best_rank, "caption": caps[0] if caps else "",
                "pool": pool}

    def next_task(self, annotator: str, *, query: int | str | None = None) -> dict[str, Any] | None:
        """The next result for this annotator to grade (from every pool, or from one query's), or
        ``None`` when there is nothing left; the demo pool is created on first use."""
        store = self._store()
        store.add_annotator(annotator)  # so that progress counts what is left for a newcomer
        if query is None:
            self.ensure_demo_pool()
        items = store.next_items(annotator, 1, query=query)
        if not items:
            return None
        it = items[0]
        return self._task(query_id=it.query_id, item_id=it.item_id, item_modality=it.item_modality,
                          best_rank=it.best_rank, pool=it.pool)

    def grade(self, task: Mapping[str, Any], *, grade: int, annotator: str) -> int:
        """Save one grade at once (with the model and index that produced the result); returns its id."""
        return self._store().record_judgement(
            query=task["query_id"], item_id=task["item_id"], item_modality=task["item_modality"],
            grade=int(grade), annotator=annotator, model_fingerprint=self.fingerprint or None,
            index_version=self.index_version)

    def undo(self, annotator: str) -> dict[str, Any] | None:
        """Withdraw the annotator's latest grade; returns that result as a task to grade again."""
        res = self._store().undo(annotator=annotator)
        if res is None:
            return None
        j = res.undone
        return self._task(query_id=j.query_id, item_id=j.item_id, item_modality=j.item_modality,
                          best_rank=None, pool=None)

    def label_progress(self, annotator: str) -> dict[str, int]:
        """``{"judged", "queries", "remaining"}`` of one annotator over all pools."""
        for a in self._store().progress().annotators:
            if a.annotator == annotator:
                return {"judged": a.judged, "queries": a.queries, "remaining": a.remaining}
        return {"judged": 0, "queries": 0, "remaining": 0}

    def _stored_query_vector(self, q: Any) -> EncodedQuery:
        if q.modality == "text":
            return self.encode_query(text=q.text)
        if q.media_path is None:
            raise XmrError(f"query {q.qid} has no stored media")
        return self.encode_query(**{q.modality: str(q.media_path)})

    def human_eval(self, *, k: int = 10) -> list[dict[str, Any]]:
        """The loaded model scored on every human-labelled evaluation set, with agreement figures.

        Returns:
            one dict per set: ``name``, ``n_queries``, ``n_judged_queries``, ``n_judgements``,
            ``mean`` (nDCG@10, MAP, P@10, recall@10, judged@10 as ``xmr.labels.evaluate_run``
            names them) and ``agreement`` (results graded twice or more, Fleiss' κ, Krippendorff's α).
        """
        from xmr.labels import agreement_report, evaluate_run, make_docno

        store = self._store()
        out = []
        for s in store.list_eval_sets():
            row: dict[str, Any] = {"name": s.name, "n_queries": s.n_queries,
                                   "n_judged_queries": s.n_judged_queries,
                                   "n_judgements": s.n_judgements, "mean": {}, "agreement": None}
            qrels = store.qrels(eval_set=s.name)
            if qrels:
                run: dict[str, dict[str, float]] = {}
                for qid in qrels:
                    q = store.get_query(qid)
                    hits = self.search(self._stored_query_vector(q), targets=self.label_targets(q.modality),
                                       k=k)
                    run[qid] = {make_docno(h.modality, h.item_id): h.score for h in hits}
                row["mean"] = evaluate_run(store, run=run, eval_set=s.name).mean
                rep = agreement_report(store, eval_set=s.name)
                row["agreement"] = {"n_items": rep.n_items, "annotators": len(rep.annotators),
                                    "fleiss_kappa": rep.fleiss_kappa,
                                    "krippendorff_alpha": rep.krippendorff_alpha_ordinal}
            out.append(row)
        return out

    def compare(self, checkpoint: str | Path, *, split: str = "test", max_items: int = 200) -> dict[str, Any]:
        """Compare the loaded model with a second checkpoint on the same items of a split.

        The second model embeds a seeded sample of at most ``max_items`` items of the split (media
        rendered on demand); the loaded model's indexed vectors of the same items are used, so both
        rank the same candidates. Per direction: both models' metrics and a paired randomization
        test and t-test on the per-query reciprocal ranks (``xmr.eval.compare``).
        """
        import xmr
        from xmr.eval.compare import compare_per_query

        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise InputError(f"the checkpoint folder {path} does not exist")
        other = xmr.load_model(path)
        mine = _split_vectors(self, split)
        common = sorted(set.intersection(*(set(ids) for _, ids in mine.values()))) if mine else []
        if len(common) > max_items:
            common = sorted(np.random.default_rng(0).choice(common, size=max_items, replace=False).tolist())
        if len(common) < 2:
            raise XmrError(f"the {split} split has too few items to compare on")
        a_vecs, b_vecs = {}, {}
        for m, (v, ids) in mine.items():
            if m not in getattr(other, "modalities", MODALITIES):
                continue
            pos = {i: n for n, i in enumerate(ids)}
            a_vecs[m] = (v[[pos[i] for i in common]], common)
            if m == "text":
                vecs = other.encode("text", [self.captions(i)[0] for i in common])
            elif m == "audio":  # track vectors, windowed as the index embeds them
                from xmr.index import embed_tracks
                from xmr.media.audio import load_audio

                sr = int(other.sample_rate)
                waves = [load_audio(str(self.media(i, "audio")), sample_rate=sr) for i in common]
                tracks = embed_tracks(lambda w: other.encode("audio", w), waves, sample_rate=sr,
                                      window_seconds=float(other.audio_window_seconds))
                vecs = np.stack([t.vector for t in tracks])
            else:
                vecs = other.encode(m, [str(self.media(i, m)) for i in common])
            b_vecs[m] = (np.asarray(vecs, dtype=np.float32), common)
        a = directions_report(a_vecs)
        b = directions_report(b_vecs)
        rows = {}
        for d in a:
            if d in b:
                rows[d] = {"a": a[d]["metrics"], "b": b[d]["metrics"],
                           "test": compare_per_query(a[d]["rr"], b[d]["rr"], n_resamples=5000)}
        return {"a": self.fingerprint, "b": str(getattr(other, "fingerprint", path)), "n_items": len(common),
                "directions": rows}


# ---------------------------------------------------------------------- helpers


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64] or "model"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _media_path(row: dict[str, Any], modality: str, *, manifest_dir: Path, cache_dir: Path) -> Path:
    """The file of an item's view: on disk already, or rendered by the corpus module."""
    value = row.get(modality)
    if isinstance(value, str) and value and Path(value).is_file():
        return Path(value)
    try:
        from xmr.data.corpus import media_path
    except ImportError:
        raise XmrError(f"the {modality} of item {row.get('id')} is not on disk and cannot be rendered "
                       "here") from None
    return Path(media_path(row, modality, manifest_dir=manifest_dir, cache_dir=cache_dir))


def _index_modalities(index: Any) -> list[str]:
    for name in ("modalities", "targets"):
        value = getattr(index, name, None)
        if value is not None:
            return list(value() if callable(value) else value)
    raise XmrError("the index store does not say which modalities it holds")


def _index_search(index: Any, vectors: np.ndarray, *, targets: tuple[str, ...], k: int
                  ) -> list[list[tuple[str, str, float, float | None]]]:
    """Search and return, per query row, ``(item_id, modality, score, track_offset)`` tuples."""
    raw = index.search(np.ascontiguousarray(vectors, dtype=np.float32), targets=targets, k=k)
    out = []
    for row in raw:
        hits = []
        for h in row:
            get = h.get if isinstance(h, Mapping) else (lambda name, default=None, _h=h: getattr(_h, name,
                                                                                                default))
            item_id = get("id", None) or get("item_id", None)
            offset = get("offset", None)
            if offset is None:
                offset = get("start", None)
            hits.append((str(item_id), str(get("modality", None)), float(get("score", 0.0)),
                         None if offset is None else float(offset)))
        out.append(hits)
    return out


def _index_vectors(index: Any, modality: str) -> tuple[np.ndarray, list[str]]:
    """All vectors of one modality's index and their item ids."""
    vecs, ids = index.vectors(modality)
    return np.asarray(vecs, dtype=np.float32), [str(i) for i in ids]


def _split_vectors(service: RetrievalService, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per modality, one indexed vector per item of the split (the first, e.g. of the first caption)."""
    df = service.manifest
    in_split = set(df.loc[df["split"] == split, "id"].astype(str)) if "split" in df.columns else \
        set(df["id"].astype(str))
    out = {}
    for m in service.targets():
        v, ids = _index_vectors(service.index, m)
        first: dict[str, int] = {}
        for n, i in enumerate(ids):
            if i in in_split and i not in first:
                first[i] = n
        order = sorted(first)
        out[m] = (v[[first[i] for i in order]], order)
    return out


def directions_report(vectors: Mapping[str, tuple[np.ndarray, list[str]]], *, max_queries: int = 2000,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Every direction between the modalities, one-to-one relevance (an item's own other view).

    Args:
        vectors: modality → ((N, D) vectors, N item ids).
        max_queries: a seeded subsample of queries above this many (candidates are never cut).

    Returns:
        ``{"audio→image": {"metrics": {...}, "ranks": [...], "rr": [...], "query_ids": [...],
        "n_candidates": N, "n_queries": Q}, ...}`` with the metrics of ``xmr.eval`` (chance included).
    """
    from xmr.eval import per_query_metrics, summarize

    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for qm, (qv, qids) in vectors.items():
        for tm, (tv, tids) in vectors.items():
            if qm == tm:
                continue
            common = sorted(set(qids) & set(tids))
            if len(common) < 2:
                continue
            if len(common) > max_queries:
                common = sorted(rng.choice(common, size=max_queries, replace=False).tolist())
            q_pos = {i: n for n, i in enumerate(qids)}
            t_pos = {i: n for n, i in enumerate(tids)}
            scores = qv[[q_pos[i] for i in common]] @ tv.T  # (Q, N) cosine similarities
            relevant = np.zeros(scores.shape, dtype=bool)
            relevant[np.arange(len(common)), [t_pos[i] for i in common]] = True
            pq = per_query_metrics(scores, relevant, ks=ks)
            summary = summarize(pq)
            out[f"{qm}→{tm}"] = {
                "metrics": summary, "ranks": pq.first_rank.astype(int).tolist(), "rr": pq.rr.tolist(),
                "query_ids": common, "n_candidates": int(scores.shape[1]), "n_queries": len(common),
            }
    return out


def _split_report(service: RetrievalService, *, split: str, max_queries: int) -> dict[str, Any]:
    """Metrics of every direction on one split, from the indexed vectors."""
    directions = directions_report(_split_vectors(service, split), max_queries=max_queries)
    return {"split": split, "fingerprint": service.fingerprint, "directions": directions}
