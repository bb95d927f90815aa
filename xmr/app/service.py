"""The retrieval service behind the app: model + indexes + manifest + label store, created once.

Everything the UI does is a method here, with plain Python types in and out, so that the same
calls serve the Gradio app, the benchmark and tests without a browser. Nothing in this module
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
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr import MODALITIES
from xmr.data.files import media_file
from xmr.errors import InputError, MissingAssetError, XmrError
from xmr.eval.directions import score_directions
from xmr.eval.metrics import summarize
from xmr.index.query import EncodedQuery, QueryLimits, embed_audio, encode_query
from xmr.index.store import Hit

if TYPE_CHECKING:
    import pandas as pd

    from xmr.index.store import IndexStore
    from xmr.labels import LabelStore
    from xmr.labels.schema import Query
    from xmr.models.model import XmrModel
    from xmr.viz import PCABasis

__all__ = ["EncodedQuery", "Hit", "MapView", "RetrievalService", "ServiceConfig", "directions_report"]

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


@dataclass(frozen=True)
class MapView:
    """The data behind the Explore plot (coordinates already projected)."""

    coords: np.ndarray
    modalities: list[str]
    hover: list[str]
    color: list[str] | None
    color_name: str
    query: np.ndarray | None


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
        self._media_locks: dict[tuple[str, str], threading.Lock] = {}
        self._media_cache: dict[tuple[str, str], Path] = {}
        self._pca: PCABasis | None = None
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
        from xmr.labels import LabelStore
        from xmr.labels.hub import from_env

        # The Hub sync (XMR_LABELS_HUB_REPO) is read here, at the edge, and handed to the store.
        labels = LabelStore(config.labels_db, sync=from_env())
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
            path = media_file(row, modality, manifest_dir=Path(self.config.manifest).parent,
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
        hits = self.index.search(query.vector, targets=targets, k=k, distinct_items=True)[0]
        if query.audio_windows is not None:
            starts = self._query_window_offsets(query, [h.item_id for h in hits], targets)
            for h in hits:
                h.query_start = starts.get(h.item_id)
        return hits

    def hit_dict(self, hit: Hit) -> dict[str, Any]:
        """A result as the app shows it and its API returns it: ``rank``, ``item_id``, ``modality``,
        ``score``, ``caption`` (the item's first), ``captions``, ``details``, ``track_offset`` (where
        in the track it matches, seconds) and ``query_offset`` (where in a long audio query)."""
        known = self.has_item(hit.item_id)
        caps = self.captions(hit.item_id) if known else []
        return {"rank": hit.rank, "item_id": hit.item_id, "modality": hit.modality, "score": float(hit.score),
                "caption": caps[0] if caps else "", "captions": caps,
                "details": self.details(hit.item_id) if known else {}, "track_offset": hit.start,
                "query_offset": hit.query_start}

    def _query_window_offsets(self, query: EncodedQuery, item_ids: list[str], targets: Sequence[str]
                              ) -> dict[str, float]:
        """For each result, the start of the query window that scores it highest (searching every
        window on its own, with a deeper list so that most results are found by some window)."""
        windows = query.audio_windows
        starts = query.window_starts
        depth = min(max(4 * len(item_ids), 20), self.config.max_k * 4)
        best: dict[str, tuple[float, float]] = {}
        wanted = set(item_ids)
        for w, hits in enumerate(self.index.search(windows, targets=targets, k=depth, distinct_items=True)):
            for h in hits:
                if h.item_id in wanted and (h.item_id not in best or h.score > best[h.item_id][0]):
                    best[h.item_id] = (h.score, float(starts[w]))
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
                        v, i = self.index.vectors(m)
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

    def _store(self) -> LabelStore:
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

    def _stored_query_vector(self, q: Query) -> EncodedQuery:
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
            if m not in other.modalities:
                continue
            pos = {i: n for n, i in enumerate(ids)}
            a_vecs[m] = (v[[pos[i] for i in common]], common)
            if m == "text":
                vecs = other.encode("text", [self.captions(i)[0] for i in common])
            elif m == "audio":  # track vectors, windowed as the index embeds them
                from xmr.media.audio import load_audio

                waves = [load_audio(str(self.media(i, "audio")), sample_rate=int(other.sample_rate))
                         for i in common]
                vecs = np.stack([t.vector for t in embed_audio(other, waves)])
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
        return {"a": self.fingerprint, "b": str(other.fingerprint), "n_items": len(common),
                "directions": rows}


# ---------------------------------------------------------------------- helpers


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64] or "model"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _split_vectors(service: RetrievalService, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per modality, one indexed vector per item of the split (the first, e.g. of the first caption)."""
    df = service.manifest
    in_split = set(df.loc[df["split"] == split, "id"].astype(str)) if "split" in df.columns else \
        set(df["id"].astype(str))
    out = {}
    for m in service.targets():
        v, ids = service.index.vectors(m)
        first: dict[str, int] = {}
        for n, i in enumerate(ids):
            if i in in_split and i not in first:
                first[i] = n
        order = sorted(first)
        out[m] = (v[[first[i] for i in order]], order)
    return out


def directions_report(vectors: Mapping[str, tuple[np.ndarray, list[str]]], *, max_queries: int = 2000,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Every direction between the modalities, one-to-one relevance (an item's own other view),
    scored by :func:`xmr.eval.directions.score_directions`.

    Args:
        vectors: modality → ((N, D) vectors, N item ids).
        max_queries: a seeded subsample of queries above this many (candidates are never cut).

    Returns:
        ``{"audio→image": {"metrics": {...}, "ranks": [...], "rr": [...], "query_ids": [...],
        "n_candidates": N, "n_queries": Q}, ...}`` with the metrics of ``xmr.eval`` (chance included).
    """
    out: dict[str, Any] = {}
    for key, d in score_directions(vectors, ks=ks, max_queries=max_queries).items():
        pq = d.per_query
        out[key] = {"metrics": summarize(pq), "ranks": pq.first_rank.astype(int).tolist(),
                    "rr": pq.rr.tolist(), "query_ids": d.query_ids, "n_candidates": d.n_candidates,
                    "n_queries": len(d.query_ids)}
    return out


def _split_report(service: RetrievalService, *, split: str, max_queries: int) -> dict[str, Any]:
    """Metrics of every direction on one split, from the indexed vectors."""
    from xmr.models.hub import untrained_directions

    directions = directions_report(_split_vectors(service, split), max_queries=max_queries)
    # a zero-shot checkpoint of pretrained towers: directions whose towers share no space
    untrained = [d for d in untrained_directions(service.config.checkpoint) if d in directions]
    return {"split": split, "fingerprint": service.fingerprint, "directions": directions,
            "untrained": untrained}
