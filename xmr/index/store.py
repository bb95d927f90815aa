"""The index store: one FAISS inner-product index per modality, with item metadata, in one folder.

Folder layout (``index.json`` describes everything else)::

    index.json              format, checkpoint fingerprint, dimension, and per index: factory
                            string, search parameters, measured recall (and against which queries),
                            vector count
    audio.faiss  audio.parquet            one row of metadata per vector (row i = FAISS label i)
    image.faiss  image.parquet
    text.faiss   text.parquet             one row per caption (several per item)
    audio_windows.faiss  audio_windows.parquet   long-audio windows: item id, start, end seconds
    audio.offsets.npz  image.offsets.npz   optional: each row's hubness offsets, one array per
                                          query bank: a modality, or "audio:part" for short
                                          clips (xmr.index.hubness)

Metadata rows hold the item ``id``, its ``caption`` (for text rows: the caption of that vector),
and the manifest's metadata columns (``split``, ``collection``, ...), which search filters use.

Example:
    >>> store = IndexStore.load("assets/demo/index", fingerprint=model.fingerprint)  # doctest: +SKIP
    >>> q = model.encode("text", ["a reel on fiddle"])  # doctest: +SKIP
    >>> hits = store.search(q, targets=("audio",), k=5)  # doctest: +SKIP
    >>> hits[0][0].item_id, hits[0][0].score, hits[0][0].start  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmr.data.jsonl import to_jsonable
from xmr.errors import CheckpointMismatchError, InputError, MissingAssetError
from xmr.index.ann import (
    build_index,
    choose_factory,
    exact_knn,
    normalize,
    parse_size,
    search_index,
    shifted_queries,
    tune_search_params,
)
from xmr.index.hubness import bank_modality
from xmr.index.metadata import clean_metadata

FORMAT = "xmr-index/1"
MODALITIES = ("audio", "image", "text")
WINDOWS = "audio_windows"
# Below this many allowed rows a filtered search scores those rows exactly (cheap, and an ANN
# index restricted to a tiny subset can miss most of it).
EXACT_FILTER_ROWS = 20_000


@dataclass
class Hit:
    """One search result: the one result type of the index, the CLI and the app.

    Attributes:
        item_id: the item id (manifest ``id``).
        modality: the index it was found in (audio, image, text).
        score: cosine similarity between the query and the matched vector, less ``beta`` times the
            row's hubness offset for the query's modalities where the index has offsets
            (:mod:`xmr.index.hubness`).
        rank: 1-based rank in this query's result list.
        caption: the matched caption (text) or the item's first caption.
        start: for audio with windows, start (seconds) of the best-matching window of the track.
        end: its end in seconds.
        row: the metadata row number (= FAISS label) in that modality's index.
        metadata: the item's metadata row (split, collection, ...).
        query_start: for a long audio query cut into windows, the start (seconds) of the query
            window that matches this item best (set by the app; ``None`` otherwise).
        bars: for an audio query, the item's bars that match it best
            (:class:`xmr.index.bars.BarMatch`; set where asked for and the item has a bar alignment).
    """

    item_id: str
    modality: str
    score: float
    rank: int = 0
    caption: str = ""
    start: float | None = None
    end: float | None = None
    row: int = -1
    metadata: dict[str, Any] = field(default_factory=dict)
    query_start: float | None = None
    bars: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IndexStore:
    """FAISS indexes per modality + metadata, built by one checkpoint (its fingerprint).

    Build with :meth:`build` (or :func:`xmr.index.build_indexes` from an embeddings folder),
    :meth:`save` to a folder, :meth:`load` it back (memory-mapped), :meth:`search`, :meth:`add`.
    """

    def __init__(self, *, fingerprint: str, dim: int, indexes: dict[str, Any], metadata: dict[str, Any],
                 info: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None,
                 folder: Path | None = None, mmapped: bool = False):
        self.fingerprint = str(fingerprint)
        self.dim = int(dim)
        self._indexes = indexes
        self._metadata = {name: clean_metadata(df) for name, df in metadata.items()}
        self.info = info
        self.extra = dict(extra or {})
        self.folder = folder
        self._mmapped = {name: mmapped for name in indexes}
        self._rows_by_id: dict[str, dict[str, np.ndarray]] = {}
        self._id_cache: dict[str, np.ndarray] = {}
        self._offsets: dict[str, dict[str, np.ndarray]] = {}  # index -> query modality -> (N,)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        vectors: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
        *,
        fingerprint: str,
        factory: str = "auto",
        memory_budget: int | str | None = None,
        target_recall: float = 0.95,
        k: int = 10,
        tuning_queries: Mapping[str, np.ndarray] | None = None,
        max_tuning_queries: int = 1000,
        seed: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> IndexStore:
        """Build one index per entry of ``vectors`` and tune each for ``target_recall``.

        Each index is tuned with *cross-modal* queries: the vectors of the other base modalities
        (at most ``max_tuning_queries``, a seeded sample), since real queries come from another
        modality and an index's own vectors would trivially find themselves. With a single
        modality, :func:`shifted_queries` stand in for them. The recall@k reached against exact
        search is recorded in ``info[name]["recall"]``.

        Args:
            vectors: ``{"audio": (N, D), "image": ..., "text": ..., "audio_windows": ...}``.
            metadata: a DataFrame per entry, one row per vector, with at least ``id``.
            fingerprint: the checkpoint fingerprint of the embeddings.
            factory: ``"auto"`` (:func:`xmr.index.ann.choose_factory`) or a FAISS factory string.
            memory_budget: bytes or ``"2G"`` for all indexes together (split by vector counts).
            target_recall: recall@k vs exact search the search parameters must reach.
            k: the recall cut-off.
            tuning_queries: explicit tuning queries per entry (overrides the cross-modal ones).
            max_tuning_queries: sample size of tuning queries.
            seed: seed of the training and tuning samples.
            extra: more fields for ``index.json`` (checkpoint path, window seconds...).

        Example:
            >>> store = IndexStore.build({"audio": a, "text": t}, {"audio": meta_a, "text": meta_t},
            ...                          fingerprint=model.fingerprint)  # doctest: +SKIP
        """
        if not vectors:
            raise InputError("there are no embeddings to index")
        arrays = {name: normalize(v) for name, v in vectors.items()}
        dims = {a.shape[1] for a in arrays.values()}
        if len(dims) != 1:
            shapes = {n: a.shape[1] for n, a in arrays.items()}
            raise InputError(f"embeddings differ in dimension: {shapes}")
        dim = dims.pop()
        budget = parse_size(memory_budget)
        total = sum(len(a) for a in arrays.values())
        rng = np.random.default_rng(seed)
        indexes, info, meta = {}, {}, {}
        for name, x in arrays.items():
            if name not in metadata:
                raise InputError(f"no metadata for the {name} vectors")
            frame = clean_metadata(metadata[name])
            if len(frame) != len(x):
                raise InputError(f"{name}: {len(x)} vectors but {len(frame)} metadata rows")
            if len(x) == 0:
                continue
            share = None if budget is None else int(budget * len(x) / total)
            fac = choose_factory(len(x), dim, memory_budget=share) if factory == "auto" else factory
            t0 = time.perf_counter()
            index = build_index(x, fac, seed=seed)
            build_s = time.perf_counter() - t0
            base = name.split("_")[0]
            if tuning_queries is not None and name in tuning_queries:
                q, source = normalize(tuning_queries[name]), "given"
            else:
                others = [m for m in MODALITIES if m != base and m in arrays and len(arrays[m])]
                if others:
                    q, source = np.concatenate([arrays[m] for m in others]), "+".join(others)
                else:
                    q, source = shifted_queries(x, max_tuning_queries, seed=seed), "shifted held-out"
            if len(q) > max_tuning_queries:
                q = q[np.sort(rng.choice(len(q), size=max_tuning_queries, replace=False))]
            kk = min(k, len(x))
            truth = exact_knn(x, q, kk)[1]
            params, recall = tune_search_params(index, q, truth, k=kk, target_recall=target_recall)
            indexes[name] = index
            meta[name] = frame
            info[name] = {
                "factory": fac,
                "search_params": params,
                "recall": round(float(recall), 4),
                "recall_k": kk,
                "target_recall": target_recall,
                "recall_queries": source,
                "tuning_queries": int(len(q)),
                "count": int(index.ntotal),
                "items": int(frame["id"].nunique()),
                "build_seconds": round(build_s, 3),
            }
        return cls(fingerprint=fingerprint, dim=dim, indexes=indexes, metadata=meta, info=info, extra=extra)

    # ------------------------------------------------------------------ files

    def _materialize(self, name: str) -> None:
        """Replace a memory-mapped (read-only) index by an in-memory copy read from its file.

        A mapped index cannot grow, and FAISS would serialise mapped IVF lists as a reference to
        the mapped file rather than their content."""
        import faiss

        if self._mmapped.get(name) and self.folder is not None:
            self._indexes[name] = faiss.read_index(str(Path(self.folder) / f"{name}.faiss"))
        self._mmapped[name] = False

    def save(self, folder: str | Path) -> Path:
        """Write the indexes, metadata and ``index.json`` into ``folder`` (atomic per file)."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in list(self._indexes):
            self._materialize(name)
            index = self._indexes[name]
            tmp = folder / f".{name}.faiss.tmp"
            faiss.write_index(index, str(tmp))
            os.replace(tmp, folder / f"{name}.faiss")
            tmp = folder / f".{name}.parquet.tmp"
            self._metadata[name].to_parquet(tmp, index=False)
            os.replace(tmp, folder / f"{name}.parquet")
            offsets = folder / f"{name}.offsets.npz"
            if name in self._offsets:
                with open(folder / f".{name}.offsets.tmp", "wb") as fh:
                    np.savez(fh, **self._offsets[name])
                os.replace(folder / f".{name}.offsets.tmp", offsets)
            elif offsets.exists():
                offsets.unlink()
        doc = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "indexes": self.info,
            **{k: to_jsonable(v) for k, v in self.extra.items()},
        }
        tmp = folder / ".index.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, default=to_jsonable) + "\n")
        os.replace(tmp, folder / "index.json")
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, fingerprint: str | None = None, mmap: bool = True) -> IndexStore:
        """Open an index folder, memory-mapping the FAISS files (read-only) where FAISS allows.

        Args:
            folder: a folder written by :meth:`save` / ``xmr index build``.
            fingerprint: the fingerprint of the checkpoint that will embed the queries; if it
                differs from the one that built the index, :class:`CheckpointMismatchError`.
            mmap: map the index files instead of reading them into RAM (they are copied into
                memory on the first :meth:`add`).

        Example:
            >>> store = IndexStore.load("index", fingerprint=model.fingerprint)  # doctest: +SKIP
        """
        import faiss
        import pandas as pd

        folder = Path(folder)
        doc_path = folder / "index.json"
        if not doc_path.is_file():
            raise MissingAssetError(f"no index at {folder} (no index.json); build one with xmr index build")
        try:
            doc = json.loads(doc_path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{doc_path} is not valid JSON ({err.msg})") from err
        if doc.get("format") != FORMAT:
            raise InputError(f"{doc_path} is not an xmr index (format {doc.get('format')!r}, want {FORMAT})")
        built_by = str(doc["fingerprint"])
        if fingerprint is not None and str(fingerprint) != built_by:
            raise CheckpointMismatchError(
                f"the index at {folder} was built by checkpoint {built_by} but the model is checkpoint "
                f"{fingerprint}; re-embed with xmr embed and rebuild with xmr index build"
            )
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        indexes, metadata = {}, {}
        for name in doc["indexes"]:
            path = folder / f"{name}.faiss"
            if not path.is_file():
                raise MissingAssetError(f"index file {path} is missing; rebuild with xmr index build")
            indexes[name] = faiss.read_index(str(path), flags)
            metadata[name] = pd.read_parquet(folder / f"{name}.parquet")
        extra = {k: v for k, v in doc.items() if k not in ("format", "fingerprint", "dim", "indexes")}
        store = cls(fingerprint=built_by, dim=int(doc["dim"]), indexes=indexes, metadata=metadata,
                    info=doc["indexes"], extra=extra, folder=folder, mmapped=bool(mmap))
        for name, entry in doc["indexes"].items():
            if "hubness" in entry:
                path = folder / f"{name}.offsets.npz"
                if not path.is_file():
                    raise MissingAssetError(f"offsets file {path} is missing; rerun xmr index hubness")
                with np.load(path) as arrays:
                    store._offsets[name] = {m: arrays[m] for m in arrays.files}
        return store

    # ------------------------------------------------------------------ inspection

    @property
    def modalities(self) -> list[str]:
        """Searchable modalities present, in the order audio, image, text."""
        return [m for m in MODALITIES if m in self._indexes]

    @property
    def names(self) -> list[str]:
        """Every index in the store, including ``audio_windows``."""
        return list(self._indexes)

    def has_windows(self) -> bool:
        return WINDOWS in self._indexes

    def count(self, name: str) -> int:
        return int(self._index(name).ntotal)

    def metadata(self, name: str):
        """The metadata DataFrame of one index (row i = FAISS label i)."""
        self._index(name)
        return self._metadata[name]

    def vectors(self, name: str) -> tuple[np.ndarray, list[str]]:
        """All vectors of one index (reconstructed; exact for Flat/HNSW/IVF-Flat) and their item ids."""
        import faiss

        index = self._index(name)
        n = int(index.ntotal)
        try:
            vecs = index.reconstruct_n(0, n)
        except RuntimeError:
            ivf = faiss.extract_index_ivf(index)
            ivf.make_direct_map()
            vecs = index.reconstruct_n(0, n)
        return np.asarray(vecs, dtype=np.float32), self._metadata[name]["id"].tolist()

    def _index(self, name: str):
        if name not in self._indexes:
            have = ", ".join(self._indexes) or "none"
            raise InputError(f"there is no {name} index here; available: {have}")
        return self._indexes[name]

    def _rows_of(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._rows_by_id:
            ids = self._metadata[name]["id"].to_numpy()
            order = np.argsort(ids, kind="stable")
            uniq, starts = np.unique(ids[order], return_index=True)
            self._rows_by_id[name] = dict(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))
        return self._rows_by_id[name]

    # ------------------------------------------------------------------ searching

    def allowed_rows(self, name: str, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Row numbers of ``name`` whose metadata match every filter (None: no filter).

        A filter value is one value or a list of accepted values: ``{"split": "test",
        "collection": ["bach", "essen"]}``.
        """
        if not filters:
            return None
        df = self._metadata[name]
        mask = np.ones(len(df), dtype=bool)
        for column, wanted in filters.items():
            if column not in df.columns:
                raise InputError(f"cannot filter on {column!r}: the {name} index metadata has "
                                 f"{', '.join(map(str, df.columns))}")
            values = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            mask &= df[column].isin(values).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    def search_rows(self, name: str, queries: np.ndarray, k: int, *, rows: np.ndarray | None = None,
                    params: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw search of one index: (scores (Q, k), labels (Q, k), -1 where fewer were found).

        ``rows`` restricts the result to those labels: a small set is scored exactly, a large one
        through a FAISS ``IDSelectorBatch`` with the index's tuned parameters.
        """
        import faiss

        index = self._index(name)
        # query vectors are normalised by the FAISS wrappers (search_index, exact_knn), once
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors have dimension {q.shape[1]}, the index has {self.dim}")
        params = params if params is not None else self.info.get(name, {}).get("search_params", {})
        if rows is None:
            return search_index(index, q, min(k, max(int(index.ntotal), 1)), params)
        rows = np.asarray(rows, dtype=np.int64)
        kk = min(int(k), len(rows))
        if kk == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(rows) <= EXACT_FILTER_ROWS:
            sub = self._reconstruct(name, rows)
            scores, local = exact_knn(sub, q, kk)
            return scores, np.where(local >= 0, rows[np.maximum(local, 0)], -1)
        selector = faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows))
        return search_index(index, q, kk, params, selector)

    def _reconstruct(self, name: str, rows: np.ndarray) -> np.ndarray:
        import faiss

        index = self._index(name)
        try:
            if not len(rows):
                return np.zeros((0, self.dim), np.float32)
            return np.stack([index.reconstruct(int(r)) for r in rows])
        except RuntimeError:
            faiss.extract_index_ivf(index).make_direct_map()
            return np.stack([index.reconstruct(int(r)) for r in rows])

    def set_offsets(self, name: str, offsets: Mapping[str, np.ndarray] | None, *, beta: float = 1.0,
                    **record: Any) -> None:
        """Give each row of index ``name`` hubness offsets (:func:`xmr.index.hubness.row_offsets`),
        one array per query bank (a modality, or a modality's partial queries: ``"audio:part"``):
        from then on :meth:`search` ranks its rows for a query of that bank by
        ``cosine - beta * offset``. ``record`` (the banks' sizes, ``k``...) goes into
        ``index.json`` with ``beta``; ``None`` removes the offsets."""
        self._index(name)
        if offsets is None:
            self._offsets.pop(name, None)
            self.info[name].pop("hubness", None)
            return
        arrays = {}
        for modality, values in offsets.items():
            if bank_modality(modality) not in MODALITIES:
                raise InputError(f"offsets for an unknown query modality {modality!r}")
            values = np.asarray(values, dtype=np.float32).reshape(-1)
            if len(values) != self.count(name) or not np.isfinite(values).all():
                bad = "" if np.isfinite(values).all() else " (some not finite)"
                raise InputError(f"the {name} index has {self.count(name)} rows; "
                                 f"got {len(values)} {modality} offsets{bad}")
            arrays[modality] = values
        self._offsets[name] = arrays
        self.info[name]["hubness"] = {"beta": float(beta), **record}

    def _shift(self, name: str, query: Mapping[str, float] | None) -> np.ndarray | None:
        """``beta`` times the rows' offsets for a query of banks ``query`` (bank -> weight: a
        modality, or ``"audio:part"`` where the index has those offsets, else its modality's;
        their offsets averaged by the weights' sizes, 0 for a modality without offsets here), or
        ``None`` when nothing is corrected."""
        offsets = self._offsets.get(name)
        if not offsets or not query:
            return None
        weights: dict[str, float] = {}
        for m, w in query.items():
            key = m.split("#")[0]
            key = key if key in offsets else bank_modality(key)
            weights[key] = weights.get(key, 0.0) + abs(float(w))
        total = sum(weights.values())
        if not total or not any(m in offsets for m in weights):
            return None
        mean = sum(w * offsets[m] for m, w in weights.items() if m in offsets) / total
        return (np.float32(self.info[name]["hubness"]["beta"]) * mean).astype(np.float32)

    def item_shift(self, name: str, ids: Sequence[str], modality: str) -> np.ndarray:
        """What :meth:`search` subtracts from the cosine of each item of ``ids`` in index ``name``
        for a query of ``modality`` (``beta * offset`` of its row; 0 without offsets), for scoring
        the same items outside the store (``bench/``). Raises :class:`InputError` for an item not
        in the index."""
        rows = self._rows_of(name)
        missing = [i for i in ids if str(i) not in rows]
        if missing:
            raise InputError(f"{len(missing)} items are not in the {name} index, e.g. {missing[0]}")
        shift = self._shift(name, {modality: 1.0})
        if shift is None:
            return np.zeros(len(ids), np.float32)
        return np.asarray([shift[rows[str(i)][0]] for i in ids], dtype=np.float32)

    def search(
        self,
        query_vectors: np.ndarray,
        targets: Sequence[str] = MODALITIES,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        distinct_items: bool = True,
        query: Mapping[str, float] | Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` best distinct items per query over the target modalities, best first.

        Each target index is searched with its tuned parameters; an item appears once per target
        modality (text: at its best-matching caption). Results of several targets are merged by
        score (cosine, comparable across modalities since all live in one space); with
        ``distinct_items`` an item found in several targets (its audio and its image) is listed
        once, at its best score. Ties go to the modality order audio, image, text, then to the id.
        For audio, when the store has a window index, each hit also gets the start/end (seconds)
        of the window of the track that matches the query best. Target ``"audio_windows"`` ranks
        tracks by their best window instead of their mean vector.

        Args:
            query_vectors: (Q, D) or (D,) query embeddings (of any length: scores are cosines).
            targets: modalities to search in.
            k: results per query.
            filters: metadata filters, e.g. ``{"split": "test", "collection": ["a", "b"]}``.
            distinct_items: list each item once over all targets (``False``: once per target).
            query: the modalities the query vectors were made from (or modality -> fusion weight;
                :attr:`EncodedQuery.banks <xmr.index.query.EncodedQuery>` names a short clip's
                bank ``"audio:part"``): indexes with hubness offsets for them rank by the
                corrected score (:mod:`xmr.index.hubness`); ``None``: plain cosines.

        Returns one list of :class:`Hit` per query.

        Example:
            >>> store.search(q, targets=("image",), k=3, filters={"split": "test"})  # doctest: +SKIP
        """
        q = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        k = int(k)
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        if not targets:
            raise InputError("choose at least one target modality to search in")
        if isinstance(query, str):
            query = [query]
        weights = dict(query) if isinstance(query, Mapping) else {m: 1.0 for m in query or ()}
        results: list[list[Hit]] = [[] for _ in range(len(q))]
        for name in dict.fromkeys(targets):
            self._index(name)
            # k per target suffices even when merging: an item among the k best overall is among
            # the k best of the target where it scores highest
            for qi, hits in enumerate(self._search_one(name, q, k, filters, weights)):
                results[qi] += hits
        out = []
        for hits in results:
            hits.sort(key=lambda h: (-h.score, MODALITIES.index(h.modality.split("_")[0]), h.item_id))
            if distinct_items:
                seen: set[str] = set()
                hits = [h for h in hits if not (h.item_id in seen or seen.add(h.item_id))]
            hits = hits[:k]
            for rank, h in enumerate(hits, start=1):
                h.rank = rank
            out.append(hits)
        return out

    def _search_one(self, name: str, q: np.ndarray, k: int, filters,
                    query: Mapping[str, float] | None = None) -> list[list[Hit]]:
        rows = self.allowed_rows(name, filters)
        meta = self._metadata[name]
        n = int(self._index(name).ntotal)
        # Several rows per item (captions, windows): fetch deeper, keep each item's best row.
        per_item = max(len(r) for r in self._rows_of(name).values()) if n else 1
        limit = n if rows is None else len(rows)
        shift = self._shift(name, query)
        fetch = min(limit, k * per_item * (1 if shift is None else 4))
        ids = self._ids(name)
        while True:
            scores, labels = self.search_rows(name, q, fetch, rows=rows)
            bound = None
            if shift is not None:  # rank by the corrected score; fetch deeper until that is exact
                valid = labels >= 0
                # a row not fetched has a cosine below the last one fetched
                bound = np.where(valid[:, -1], scores[:, -1], -np.inf) - shift.min()
                scores = np.where(valid, scores - shift[np.maximum(labels, 0)], -np.inf)
                order = np.argsort(-scores, axis=1, kind="stable")
                scores, labels = np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)
            firsts = [self._first_rows(ids, lab, k) for lab in labels]  # each item's best row
            full = all(len(f) >= k for f in firsts)
            if bound is not None and full:
                full = all(sc[f[k - 1]] >= b for sc, f, b in zip(scores, firsts, bound, strict=True))
            if full or fetch >= limit:
                break
            fetch = min(limit, fetch * 4)
        out = [self._collapse(name, meta, sc[f], lab[f])
               for sc, lab, f in zip(scores, labels, firsts, strict=True)]
        modality = name.split("_")[0]
        if modality == "audio" and self.has_windows() and name != WINDOWS:
            self._attach_windows(q, out)
        for hits in out:
            for h in hits:
                h.modality = modality
        return out

    def _ids(self, name: str) -> np.ndarray:
        """The item id of every row of ``name`` (kept until the index grows)."""
        if name not in self._id_cache:
            self._id_cache[name] = self._metadata[name]["id"].astype(str).to_numpy()
        return self._id_cache[name]

    @staticmethod
    def _first_rows(ids: np.ndarray, labels: np.ndarray, k: int) -> list[int]:
        """Positions in ``labels`` (best first) of the first row of each item, at most ``k``."""
        seen: set[str] = set()
        out = []
        for pos, lab in enumerate(labels):
            if lab < 0 or ids[lab] in seen:
                continue
            seen.add(ids[lab])
            out.append(pos)
            if len(out) >= k:
                break
        return out

    def _collapse(self, name: str, meta, scores, labels) -> list[Hit]:
        """One :class:`Hit` per row of ``labels`` (rows of distinct items, best first)."""
        hits = []
        ids = self._ids(name)
        has_time = "start" in meta.columns
        for s, lab in zip(scores, labels, strict=True):
            row = meta.iloc[int(lab)]
            hits.append(Hit(
                item_id=str(ids[lab]), modality=name, score=float(s), caption=str(row["caption"]),
                row=int(lab),
                start=float(row["start"]) if has_time else None,
                end=float(row["end"]) if has_time and "end" in meta.columns else None,
                metadata={c: to_jsonable(row[c]) for c in meta.columns if c not in ("id", "caption")},
            ))
        return hits

    def _attach_windows(self, q: np.ndarray, results: list[list[Hit]]) -> None:
        """Give each audio hit the start/end of its track window closest to the query."""
        rows_by_id = self._rows_of(WINDOWS)
        meta = self._metadata[WINDOWS]
        for qi, hits in enumerate(results):
            for h in hits:
                rows = rows_by_id.get(h.item_id)
                if rows is None or not len(rows):
                    continue
                vecs = normalize(self._reconstruct(WINDOWS, rows))
                best = int(rows[int(np.argmax(vecs @ q[qi]))])
                h.start = float(meta["start"].iat[best])
                h.end = float(meta["end"].iat[best])

    # ------------------------------------------------------------------ adding

    def add(self, name: str, vectors: np.ndarray, metadata) -> None:
        """Append vectors and their metadata rows to one index without rebuilding it.

        The index keeps its factory, training (IVF centroids, PQ codebooks) and search
        parameters; new rows get the next FAISS labels. A memory-mapped index is first copied into
        RAM. Call :meth:`save` to persist.

        Args:
            name: ``audio``, ``image``, ``text`` or ``audio_windows``; a new name creates an exact index.
            vectors: (N, D) embeddings from the same checkpoint.
            metadata: N rows with at least ``id``.

        Example:
            >>> store.add("audio", model.encode("audio", paths), new_rows)  # doctest: +SKIP
            >>> store.save("index")  # doctest: +SKIP
        """
        import pandas as pd

        x = normalize(vectors)
        if x.shape[1] != self.dim:
            raise InputError(f"new vectors have dimension {x.shape[1]}, the index has {self.dim}")
        frame = clean_metadata(metadata)
        if len(frame) != len(x):
            raise InputError(f"{len(x)} vectors but {len(frame)} metadata rows")
        if name not in self._indexes:
            self._indexes[name] = build_index(x[:0], "Flat")
            self._metadata[name] = frame.iloc[:0]
            self._mmapped[name] = False
            self.info[name] = {"factory": "Flat", "search_params": {}, "recall": 1.0, "count": 0}
        if name in ("audio", "image"):
            clash = set(frame["id"]) & set(self._metadata[name]["id"])
            if clash or frame["id"].duplicated().any():
                dup = sorted(clash)[:3] or frame.loc[frame["id"].duplicated(), "id"].tolist()[:3]
                raise InputError(f"items already in the {name} index: {', '.join(dup)}")
        self._materialize(name)
        self._indexes[name].add(x)
        if name in self._offsets:  # new rows get the mean offset (0) until the offsets are recomputed
            self._offsets[name] = {m: np.concatenate([v, np.zeros(len(x), np.float32)])
                                   for m, v in self._offsets[name].items()}
        self._metadata[name] = pd.concat([self._metadata[name], frame], ignore_index=True)
        self._rows_by_id.pop(name, None)
        self._id_cache.pop(name, None)
        self.info[name]["count"] = int(self._indexes[name].ntotal)
        self.info[name]["items"] = int(self._metadata[name]["id"].nunique())
