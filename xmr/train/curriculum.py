"""3CMLF (Chao et al. 2022, Sec. II-B/E): global curriculum batch sets from ancillary embeddings,
and the 3-stage schedule.

* **Ancillary embeddings** (§II-B): one vector ``e_i`` per training item from an earlier model
  (:func:`ancillary_embeddings` embeds a manifest with a checkpoint, or takes arrays).
* **Batch sets** built globally over the whole training set (§II-B, Fig. 2):

  - *easy* -- items of a batch mutually dissimilar (approximately minimising eq. (2), the sum of
    intra-batch cosine similarities): the hard set's similarity order dealt out with a stride of
    ``N / B``, so every cluster is spread evenly over the batches;
  - *median* -- random batches;
  - *hard* -- items of a batch mutually similar (approximately maximising eq. (3)): spherical
    k-means into ``N / B`` clusters, clusters ordered along a nearest-centroid chain, items laid
    out cluster by cluster and cut into batches of ``B``, so a batch is one cluster or two
    neighbouring ones.

  Each epoch draws new batch sets (k-means seeded by ``(seed, epoch)``) and visits every item
  exactly once (``drop_last`` drops at most ``B - 1`` items, a different set each epoch).
* **The schedule** (§II-E) is data: a list of :class:`Stage` ``(batches, frozen, epochs)``; the
  default is 3CMLF's: easy batches with the text tower frozen, median batches with the audio tower
  frozen, then hard batches with everything trained. After the last stage its setting continues.

:class:`CurriculumBatchSampler` is a ``torch.utils.data.Sampler`` of batches (each process gets
its rows of every global batch), deterministic by ``(seed, epoch)``, with ``state_dict`` for resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from xmr.errors import InputError

BATCH_SETS = ("easy", "median", "hard")


@dataclass
class Stage:
    """One curriculum stage.

    Args:
        batches: which batch set: ``"easy"``, ``"median"`` or ``"hard"``.
        epochs: how many epochs the stage lasts.
        frozen: modalities whose towers are frozen during the stage.
    """

    batches: str
    epochs: int = 1
    frozen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.batches not in BATCH_SETS:
            raise InputError(f"unknown batch set {self.batches!r}; known: {', '.join(BATCH_SETS)}")
        if self.epochs < 1:
            raise InputError("a curriculum stage needs at least one epoch")
        bad = set(self.frozen) - {"audio", "image", "text"}
        if bad:
            raise InputError(f"unknown modality to freeze: {', '.join(sorted(bad))}")
        self.frozen = list(self.frozen)


def default_schedule(epochs: Sequence[int] = (1, 1, 1)) -> list[Stage]:
    """3CMLF §II-E: (1) easy set, text frozen; (2) median set, audio frozen; (3) hard set, all trained."""
    e1, e2, e3 = epochs
    return [Stage("easy", e1, ["text"]), Stage("median", e2, ["audio"]), Stage("hard", e3, [])]


def parse_schedule(stages: Sequence[Stage | dict[str, Any]] | None) -> list[Stage]:
    """Stages from config mappings (``[{batches: easy, epochs: 2, frozen: [text]}, ...]``); None = default."""
    if stages is None:
        return default_schedule()
    out = [s if isinstance(s, Stage) else Stage(**dict(s)) for s in stages]
    if not out:
        raise InputError("a curriculum needs at least one stage")
    return out


# ----------------------------------------------------------------------------- ancillary embeddings
def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError("ancillary embeddings must be a finite (N, D) array")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ancillary_embeddings(
    source: Any,
    manifest: Any = None,
    *,
    modalities: Sequence[str] = ("audio", "text"),
    batch_size: int = 32,
    cache_dir: Any = None,
) -> np.ndarray:
    """One L2-normalised vector per training item, for building the batch sets.

    Args:
        source: an ``(N, D)`` array (used as is), a dict of ``(N, D)`` arrays per modality, a
            loaded model, or a checkpoint folder (an earlier model, as 3CMLF's pretrained network).
        manifest: the items, when ``source`` is a model: a manifest DataFrame (``audio``/``image``
            paths, ``caption`` lists; media missing on disk are rendered with
            :func:`xmr.data.corpus.media_path`), or a mapping ``{modality: [input or None, ...]}``
            of what ``model.encode`` takes (waveforms, images, paths, strings).
        modalities: whose embeddings are averaged into the item's vector (each L2-normalised first);
            missing values are skipped.
        batch_size: encoding batch size.
        cache_dir: where media rendered on demand go (default: the package cache).

    Example:
        >>> e = ancillary_embeddings(np.eye(3))  # doctest: +SKIP
        >>> e = ancillary_embeddings("runs/base/checkpoint", read_manifest("m.parquet"))  # doctest: +SKIP
    """
    if isinstance(source, np.ndarray):
        return _normalise(source)
    if isinstance(source, dict):
        arrays = [_normalise(v) for v in source.values()]
        return _normalise(np.mean(arrays, axis=0))
    model = source
    if not hasattr(source, "encode"):
        from xmr.models import load_model

        model = load_model(source)
    if manifest is None:
        raise InputError("ancillary_embeddings needs the items to embed (a manifest or a mapping)")
    columns = _item_inputs(manifest, modalities, cache_dir)
    n = len(next(iter(columns.values()))) if columns else len(manifest)
    total = np.zeros((n, model.embed_dim), dtype=np.float32)
    count = np.zeros(n, dtype=np.float32)
    for m, values in columns.items():
        if m not in model.modalities:
            continue
        rows = [i for i, v in enumerate(values) if v is not None]
        if rows:
            total[rows] += model.encode(m, [values[i] for i in rows], batch_size=batch_size)
            count[rows] += 1
    if (count == 0).any():
        raise InputError(f"{int((count == 0).sum())} items have none of the modalities {list(modalities)}")
    return _normalise(total)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _item_inputs(manifest: Any, modalities: Sequence[str], cache_dir: Any) -> dict[str, list[Any]]:
    """``{modality: [input or None per item]}`` from a mapping or a manifest DataFrame."""
    if isinstance(manifest, dict):
        return {m: [None if _missing(v) else v for v in manifest[m]] for m in modalities if m in manifest}
    out: dict[str, list[Any]] = {}
    for m in modalities:
        col = "caption" if m == "text" else m
        if col not in manifest.columns:
            continue
        values: list[Any] = []
        for _, row in manifest.iterrows():
            v = row[col]
            if m == "text":
                v = v[0] if isinstance(v, (list, tuple, np.ndarray)) and len(v) else v
                values.append(None if _missing(v) else str(v))
                continue
            if _missing(v):
                values.append(None)
            else:  # on disk, or a demo-corpus item rendered on demand
                from xmr.data.files import media_file

                values.append(str(media_file(row, m, cache_dir=cache_dir)))
        out[m] = values
    return out


# ----------------------------------------------------------------------------- batch sets
def spherical_kmeans(x: np.ndarray, k: int, *, rng: np.random.Generator, iters: int = 15) -> np.ndarray:
    """Cluster labels of L2-normalised rows by cosine k-means (k-means++ seeding)."""
    n = x.shape[0]
    k = max(1, min(k, n))
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    dist = 1.0 - x @ centres[0]
    for c in range(1, k):
        p = np.clip(dist, 0, None) ** 2
        idx = rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)
        centres[c] = x[idx]
        dist = np.minimum(dist, 1.0 - x @ centres[c])
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        labels = np.argmax(x @ centres.T, axis=1)
        new = np.zeros_like(centres)
        np.add.at(new, labels, x)
        norms = np.linalg.norm(new, axis=1, keepdims=True)
        empty = norms[:, 0] < 1e-12
        new[~empty] /= norms[~empty]
        new[empty] = centres[empty]  # an emptied cluster keeps its centre
        if np.allclose(new, centres):
            break
        centres = new
    return labels


def easy_batches(emb: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Mutually dissimilar batches: the similarity-ordered sequence of :func:`hard_batches`, dealt out
    with a stride of ``N // B``, so that batch-mates lie far apart along the order (every cluster is
    spread evenly over the batches)."""
    seq = [i for b in _similarity_order(emb, batch_size, rng) for i in b]
    n_batches = len(seq) // batch_size
    head, tail = seq[: n_batches * batch_size], seq[n_batches * batch_size :]
    batches = [head[k::n_batches] for k in range(n_batches)]
    return batches + ([tail] if tail else [])


def median_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Random batches (3CMLF's median set)."""
    perm = rng.permutation(n)
    return [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]


def hard_batches(emb: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Mutually similar batches: k-means into N/B clusters, a nearest-centroid chain, cut into B."""
    seq = [i for c in _similarity_order(emb, batch_size, rng) for i in c]
    return [seq[i : i + batch_size] for i in range(0, len(seq), batch_size)]


def _similarity_order(emb: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Clusters (lists of items) of a k-means into N/B clusters, ordered along a nearest-centroid chain."""
    n = emb.shape[0]
    labels = spherical_kmeans(emb, max(1, n // batch_size), rng=rng)
    ids = np.unique(labels)
    centres = np.stack([emb[labels == c].mean(0) for c in ids])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    left = set(range(len(ids)))
    cur = int(rng.integers(len(ids)))
    chain = [cur]
    left.discard(cur)
    while left:
        cand = np.array(sorted(left))
        cur = int(cand[np.argmax(centres[cand] @ centres[cur])])
        chain.append(cur)
        left.discard(cur)
    return [[int(i) for i in rng.permutation(np.flatnonzero(labels == ids[c]))] for c in chain]


def build_batch_set(
    kind: str, emb: np.ndarray, batch_size: int, *, seed: int = 0, epoch: int = 0, drop_last: bool = True
) -> list[list[int]]:
    """One epoch of global batches of ``kind`` (every item once; batch order shuffled).

    Args:
        kind: ``"easy"``, ``"median"`` or ``"hard"``.
        emb: ``(N, D)`` L2-normalised ancillary embeddings.
        batch_size: B (global).
        seed, epoch: the batches are a function of these.
        drop_last: drop the one batch smaller than B (at most B - 1 items skip this epoch).
    """
    if kind not in BATCH_SETS:
        raise InputError(f"unknown batch set {kind!r}; known: {', '.join(BATCH_SETS)}")
    emb = np.asarray(emb, dtype=np.float32)
    n = emb.shape[0]
    if batch_size < 1 or n < batch_size:
        raise InputError(f"batch size {batch_size} does not fit {n} items")
    rng = np.random.default_rng([seed, epoch, BATCH_SETS.index(kind)])
    if kind == "easy":
        batches = easy_batches(emb, batch_size, rng)
    elif kind == "hard":
        batches = hard_batches(emb, batch_size, rng)
    else:
        batches = median_batches(n, batch_size, rng)
    full = [b for b in batches if len(b) == batch_size]
    short = [i for b in batches if len(b) < batch_size for i in b]
    if not drop_last:
        full += [short[i : i + batch_size] for i in range(0, len(short), batch_size)]
    return [full[i] for i in rng.permutation(len(full))]


def mean_intra_batch_similarity(emb: np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Mean cosine similarity over all pairs of items that share a batch (eqs. 2-3 per pair)."""
    total, pairs = 0.0, 0
    for b in batches:
        if len(b) < 2:
            continue
        e = emb[list(b)]
        s = e @ e.T
        total += float(s.sum() - np.trace(s))
        pairs += len(b) * (len(b) - 1)
    return total / max(pairs, 1)


# ----------------------------------------------------------------------------- the sampler
class CurriculumBatchSampler(torch.utils.data.Sampler):
    """Global curriculum batches for every epoch, following a stage schedule.

    As a ``torch.utils.data.Sampler`` it yields, for the current epoch, this process's rows
    ``[rank*b:(rank+1)*b]`` of every global batch (``b = B / world_size``); ``next_batch()`` gives
    whole global batches (for a trainer that slices itself). Both advance the same position, so a
    ``state_dict`` taken between batches resumes exactly.

    Args:
        embeddings: ``(N, D)`` ancillary embeddings (see :func:`ancillary_embeddings`).
        batch_size: the global batch size B.
        schedule: stages (default :func:`default_schedule`).
        seed: base seed.
        rank, world_size: this process and the number of processes.
        drop_last: drop the short last batch of an epoch.

    Example:
        >>> s = CurriculumBatchSampler(np.eye(8, dtype=np.float32), 4)
        >>> s.stage().batches, sorted(i for b in s for i in b)
        ('easy', [0, 1, 2, 3, 4, 5, 6, 7])
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        batch_size: int,
        *,
        schedule: Sequence[Stage | dict[str, Any]] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        self.emb = _normalise(embeddings)
        self.batch_size = int(batch_size)
        if world_size < 1 or not 0 <= rank < world_size or self.batch_size % world_size:
            raise InputError(f"global batch {batch_size} cannot be split over {world_size} processes")
        if self.emb.shape[0] < self.batch_size:
            raise InputError(f"batch size {batch_size} is larger than the {self.emb.shape[0]} items")
        self.schedule = parse_schedule(schedule)
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), rank, world_size, drop_last
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def num_items(self) -> int:
        return self.emb.shape[0]

    def stage_index(self, epoch: int | None = None) -> int:
        """Index of the stage an epoch belongs to (the last stage continues after the schedule)."""
        epoch = self.epoch if epoch is None else epoch
        end = 0
        for i, s in enumerate(self.schedule):
            end += s.epochs
            if epoch < end:
                return i
        return len(self.schedule) - 1

    def stage(self, epoch: int | None = None) -> Stage:
        return self.schedule[self.stage_index(epoch)]

    def frozen(self, epoch: int | None = None) -> list[str]:
        """Modalities to freeze in an epoch (the current one by default)."""
        return list(self.stage(epoch).frozen)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The global batches of an epoch (cached for the last epoch asked)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            kind = self.stage(epoch).batches
            self._cache = (
                epoch,
                build_batch_set(
                    kind, self.emb, self.batch_size, seed=self.seed, epoch=epoch, drop_last=self.drop_last
                ),
            )
        return self._cache[1]

    @property
    def batches_per_epoch(self) -> int:
        return len(self.batches())

    def next_batch(self) -> tuple[list[int], bool]:
        """The next global batch and whether it ends an epoch (then the epoch counter advances)."""
        batches = self.batches()
        batch = list(batches[self.position])
        self.position += 1
        ended = self.position >= len(batches)
        if ended:
            self.epoch += 1
            self.position = 0
        return batch, ended

    def local_rows(self, batch: Sequence[int]) -> list[int]:
        """This process's rows of a global batch."""
        b = len(batch) // self.world_size
        return list(batch[self.rank * b : (self.rank + 1) * b])

    def __iter__(self) -> Iterator[list[int]]:
        """The rest of the current epoch, as this process's rows of each global batch."""
        epoch = self.epoch
        while self.epoch == epoch:
            batch, _ = self.next_batch()
            yield self.local_rows(batch)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.position

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "schedule": [asdict(s) for s in self.schedule],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if "seed" in state:
            self.seed = int(state["seed"])
        if "schedule" in state:
            self.schedule = parse_schedule(state["schedule"])
        self._cache = None
