"""The retrieval service behind the app: model + indexes + manifest + label store, loaded once.

This is the small core every tab's workflow works over: loading, queries, search, media and item
details, with plain Python types in and out, so that the same calls serve the Gradio app, the
benchmark and tests without a browser. The workflows live beside it, each taking the service:
:class:`~xmr.app.labelling.Labelling` (the Label tab), :class:`~xmr.app.evaluation.Evaluation`
(the Evaluate tab) and :class:`~xmr.app.explore.Explorer` (the Explore tab's map). Nothing here
imports gradio; per-visitor state (the current query, the annotator) is passed in by the caller,
never kept on the service, which every visitor shares.

Example::

    service = RetrievalService.from_config(ServiceConfig.from_env())
    query = service.encode_query(text="a slow chorale for organ in a minor key")
    for hit in service.search(query, targets=("audio", "image"), k=5):
        print(hit.rank, hit.item_id, round(hit.score, 3), service.hit_dict(hit)["caption"])
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr import MODALITIES
from xmr.data.files import media_file
from xmr.errors import InputError, MissingAssetError
from xmr.index.bars import BarLocator, BarMatch, draw_bars
from xmr.index.query import EncodedQuery, QueryLimits, encode_query
from xmr.index.store import Hit

if TYPE_CHECKING:
    import pandas as pd

    from xmr.index.store import IndexStore
    from xmr.labels import LabelStore
    from xmr.models.model import XmrModel

__all__ = ["EncodedQuery", "Hit", "RetrievalService", "ServiceConfig", "file_payload_path", "safe_name"]

# Rendered media files remembered by path (least recently used dropped first; a dropped one is
# found again on disk by the cache it was rendered into).
MEDIA_PATHS = 4096
# Results whose bars are matched at once (their files rendered on demand).
MEDIA_WORKERS = 2
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
        label_overlap: grades asked per result of the demo labelling pool.
        label_lease_s: how long a result shown to an annotator stays reserved for them.
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
    label_overlap: int = 1
    label_lease_s: float = 300.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceConfig:
        """Paths from ``xmr.paths`` (``XMR_CHECKPOINT``, ``XMR_INDEX``, ``XMR_MANIFEST``, ``XMR_LABELS_DB``,
        ``XMR_CACHE_DIR``), limits from ``XMR_MAX_AUDIO_SECONDS`` and ``XMR_MAX_K``, the optional
        ``XMR_COMPARE_CHECKPOINT``, and labelling from ``XMR_LABELS_OVERLAP`` and ``XMR_LABELS_LEASE_S``;
        keyword overrides win.
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
            "label_overlap": int(os.environ.get("XMR_LABELS_OVERLAP", cls.label_overlap)),
            "label_lease_s": float(os.environ.get("XMR_LABELS_LEASE_S", cls.label_lease_s)),
        }
        values.update(overrides)
        return cls(**values)


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
        model: the model (``xmr.load_model``).
        index: the indexes built by that model.
        manifest: the manifest of the indexed items (``xmr.data.manifest.read_manifest``).
        config: paths and limits.
        labels: the label store (``None`` disables labelling).
    """

    def __init__(self, *, model: XmrModel, index: IndexStore, manifest: pd.DataFrame, config: ServiceConfig,
                 labels: LabelStore | None = None):
        self.model = model
        self.index = index
        self.manifest = manifest.reset_index(drop=True)
        self.config = config
        self.labels = labels
        self._rows = {str(i): n for n, i in enumerate(self.manifest["id"].astype(str))}
        self._lock = threading.Lock()
        # (item, modality) -> its file, most recently used last, at most MEDIA_PATHS entries; a render
        # lock lives only while its render runs: neither grows with the queries served
        self._media_locks: dict[tuple[str, str], threading.Lock] = {}
        self._media_cache: OrderedDict[tuple[str, str], Path] = OrderedDict()
        # span vectors of the results' bars (xmr.index.bars), kept per item
        self._media_pool = ThreadPoolExecutor(max_workers=MEDIA_WORKERS, thread_name_prefix="xmr-bars")
        self.bars = BarLocator(model)  # scored via each result's audio (xmr.index.bars.DEFAULT_VIA)
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
        from xmr.labels import LabelStore
        from xmr.labels.hub import from_env

        # The Hub sync (XMR_LABELS_HUB_REPO) is read here, at the edge, and handed to the store.
        labels = LabelStore(config.labels_db, sync=from_env(), lease_s=config.label_lease_s)
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
        return str(self.model.fingerprint)

    def targets(self) -> list[str]:
        """Modalities that have an index, in the canonical order."""
        return list(self.index.modalities)

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
        cached = self._cached_media(key)
        if cached is not None:
            return cached
        row = self.row(item_id)
        with self._lock:
            lock = self._media_locks.setdefault(key, threading.Lock())
        try:
            with lock:  # two visitors asking for the same clip render it once
                cached = self._cached_media(key)
                if cached is not None:
                    return cached
                path = media_file(row, modality, manifest_dir=Path(self.config.manifest).parent,
                                  cache_dir=Path(self.config.cache_dir))
                with self._lock:
                    self._media_cache[key] = path
                    while len(self._media_cache) > MEDIA_PATHS:
                        self._media_cache.popitem(last=False)
                return path
        finally:
            with self._lock:
                if self._media_locks.get(key) is lock and not lock.locked():
                    del self._media_locks[key]

    def _cached_media(self, key: tuple[str, str]) -> Path | None:
        with self._lock:
            cached = self._media_cache.get(key)
            if cached is not None:
                self._media_cache.move_to_end(key)
        return cached if cached is not None and cached.exists() else None

    def media_if_ready(self, item_id: str, modality: str) -> Path | None:
        """The item's file when it is on disk already (shipped, or rendered before), without rendering."""
        cached = self._cached_media((str(item_id), modality))
        if cached is not None:
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

    @property
    def limits(self) -> QueryLimits:
        """What a visitor may send (from the config)."""
        cfg = self.config
        return QueryLimits(max_audio_seconds=cfg.max_audio_seconds, max_image_pixels=cfg.max_image_pixels,
                           max_text_chars=cfg.max_text_chars)

    def encode_query(self, *, audio: Any = None, image: Any = None, text: str | None = None,
                     weights: Mapping[str, float] | None = None) -> EncodedQuery:
        """Encode any combination of an audio clip, an image and a text into one query vector:
        :func:`xmr.index.encode_query` (the query path of ``xmr search`` and ``xmr eval`` too) with
        this app's limits.

        Args:
            audio: a path, bytes, a ``{"path": ...}`` payload or ``(sample_rate, ndarray)``.
            image: a path, bytes, a payload, a data URL payload, a PIL image or an array.
            text: free text (normalised; cut at ``max_text_chars`` with a note).
            weights: modality → weight (default 1.0 each); an input of weight 0 is ignored.

        Raises:
            InputError: nothing to search with, or an input that cannot be decoded.
        """
        return encode_query(self.model, audio=file_payload_path(audio), image=file_payload_path(image),
                            text=text, weights=weights, limits=self.limits)

    def encode_item(self, item_id: str, modality: str) -> EncodedQuery:
        """A query made from an indexed item's own audio, image or first caption ("use as query")."""
        if modality == "text":
            caps = self.captions(item_id)
            if not caps:
                raise InputError(f"item {item_id} has no caption")
            return self.encode_query(text=caps[0])
        path = self.media(item_id, modality)
        return self.encode_query(**{modality: str(path)})

    @property
    def index_version(self) -> str | None:
        """The version of the loaded indexes, recorded with each grade (``None`` when unknown)."""
        value = getattr(self.index, "version", None)
        return None if value is None else str(value() if callable(value) else value)

    def search(self, query: EncodedQuery, *, targets: Sequence[str] = MODALITIES, k: int = 10,
               bars: bool = False) -> list[Hit]:
        """The ``k`` best items over the chosen target modalities, best first.

        Results from several target indexes are merged by score; an item found in several of them
        is listed once, at its best score (ties: modality order audio, image, text; then id). With
        ``bars``, each hit of an audio query gets the bars of its score that match best
        (:meth:`locate_bars`; the app asks for them in a step of their own, after the cards).

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
        hits = self.index.search(query.vector, targets=targets, k=k, distinct_items=True,
                                 query=query.banks)[0]
        if query.audio_windows is not None:
            starts = self._query_window_offsets(query, [h.item_id for h in hits], targets)
            for h in hits:
                h.query_start = starts.get(h.item_id)
        if bars:
            found = self.locate_bars(query, [h.item_id for h in hits])
            for h in hits:
                h.bars = found.get(h.item_id)
        return hits

    def locate_bars(self, query: EncodedQuery, item_ids: Sequence[str]) -> dict[str, BarMatch]:
        """For an audio query, the bars of each item's score that match it best
        (:class:`xmr.index.bars.BarLocator`: the item's audio cut into spans of bars as long as the
        clip, each scored against the clip, or every window of a long one; the audio is rendered
        here when it is not on disk yet, as its card plays it next). Items without a bar alignment
        or their audio are left out, as is every item for a query without exactly one audio input.
        """
        import logging

        bar_query = query.bar_query()
        out: dict[str, BarMatch] = {}
        if bar_query is None:
            return out
        log = logging.getLogger(__name__)

        def locate(item_id: str) -> BarMatch | None:
            try:
                return self.bars.locate(bar_query, self.row(item_id), self.media(item_id, self.bars.via))
            except Exception as err:  # a card without its highlight is better than no card
                log.warning("cannot match the bars of %s: %s", item_id, err)
                return None

        ids = [i for i in dict.fromkeys(str(i) for i in item_ids) if self.has_item(i)]
        # MEDIA_WORKERS items at once: their files are rendered on demand (the locator is thread-safe)
        for item_id, match in zip(ids, self._media_pool.map(locate, ids), strict=True):
            if match is not None:
                out[item_id] = match
        return out

    def highlighted_image(self, item_id: str, bars: BarMatch | Mapping[str, Any]) -> Path:
        """The item's score image with ``bars`` highlighted (drawn once into the cache)."""
        match = bars if isinstance(bars, BarMatch) else BarMatch.from_dict(bars)
        src = self.media(item_id, "image")
        boxes = "_".join(f"{x0}-{y0}-{x1}-{y1}" for x0, y0, x1, y1 in match.boxes)
        tag = hashlib.sha1(f"{src.resolve()}|{boxes}".encode()).hexdigest()[:16]
        name = f"{safe_name(item_id)}-bars{match.first + 1}-{match.last + 1}-{tag}.png"
        out = Path(self.config.cache_dir) / "highlight" / name
        if not out.exists():
            draw_bars(src, match.boxes, out)
        return out

    def hit_dict(self, hit: Hit) -> dict[str, Any]:
        """A result as the app shows it and its API returns it: ``rank``, ``item_id``, ``modality``,
        ``score``, ``caption`` (the item's first), ``captions``, ``details``, ``track_offset`` (where
        in the track it matches, seconds), ``query_offset`` (where in a long audio query) and
        ``bars`` (the best-matching bars, :meth:`xmr.index.bars.BarMatch.to_dict`, or ``None``)."""
        known = self.has_item(hit.item_id)
        caps = self.captions(hit.item_id) if known else []
        return {"rank": hit.rank, "item_id": hit.item_id, "modality": hit.modality, "score": float(hit.score),
                "caption": caps[0] if caps else "", "captions": caps,
                "details": self.details(hit.item_id) if known else {}, "track_offset": hit.start,
                "query_offset": hit.query_start,
                "bars": None if hit.bars is None else hit.bars.to_dict()}

    def _query_window_offsets(self, query: EncodedQuery, item_ids: list[str], targets: Sequence[str]
                              ) -> dict[str, float]:
        """For each result, the start of the query window that scores it highest (searching every
        window on its own, with a deeper list so that most results are found by some window)."""
        windows = query.audio_windows
        starts = query.window_starts
        depth = min(max(4 * len(item_ids), 20), self.config.max_k * 4)
        best: dict[str, tuple[float, float]] = {}
        wanted = set(item_ids)
        found = self.index.search(windows, targets=targets, k=depth, distinct_items=True, query=query.weights)
        for w, hits in enumerate(found):
            for h in hits:
                if h.item_id in wanted and (h.item_id not in best or h.score > best[h.item_id][0]):
                    best[h.item_id] = (h.score, float(starts[w]))
        return {i: v[1] for i, v in best.items()}


def safe_name(text: str) -> str:
    """``text`` (e.g. a fingerprint) as a file or pool name: letters, digits, ``-`` and ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64] or "model"
