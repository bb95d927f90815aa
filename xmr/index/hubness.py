"""Hubness correction: each indexed row's score is lowered by how near it lies to queries at large.

In a shared embedding space some items are *hubs*: near many queries of another modality, so they
crowd the top of lists they do not belong to, and short or partial queries (a 4 s clip, half a
score), which carry less evidence, suffer most. The cross-domain similarity local scaling of
Conneau et al., *Word Translation Without Parallel Data*, ICLR 2018 (CSLS, their eq. (6)) lowers a
candidate's score by its mean similarity to its ``k`` nearest queries; Bogolin et al., *Cross Modal
Retrieval with Querybank Normalisation*, CVPR 2022, take those queries from a bank of training
queries. For a query ``q`` and a row ``c`` of an index:

    score(q, c) = cos(q, c) - beta * (r(c) - mean over the rows of r),
    r(c) = the mean of the k largest cos(b, c) over the bank's queries b

Only ``r(c)`` changes the ranking of a query's results (CSLS's query term is the same for every
row; ``beta = 1/2`` is CSLS itself), so it is computed once per row when the index is built and
stored with it (:meth:`xmr.index.IndexStore.set_offsets`); centring keeps the corrected scores on
the cosine scale, so that results merged over several indexes stay comparable. A row is near
different queries in each modality (a score image may be a hub for captions and not for clips),
so each index keeps one offset per query modality, from that modality's bank queries, and a
search uses those of its query's modalities.

The bank (:func:`query_bank`) holds the queries a visitor sends, made from training items: each
item's whole audio and a clip of a few seconds, its whole score image and a run of about half its
bars, and its captions. A row is never scored against its own item's bank queries, so indexing
the training items does not lower them for matching themselves. The clips alone form one more
bank, ``"audio:part"`` (:func:`bank_key`): a short clip is near other rows than a whole excerpt
is, so an audio query of at most :data:`~xmr.models.config.PART_SECONDS` is ranked with those
offsets (on the demo corpus's 4 s clips they found the clip's item in the top 10 about 2 points
more often than the offsets of the mixed audio bank). The bank's clips are embedded as such a
query is (:func:`~xmr.index.embed_audio`: with the model's head for short clips where it has one).

Example:
    >>> bank = query_bank(model, manifest_rows, n=1200)  # doctest: +SKIP
    >>> offsets = row_offsets(image_vectors, *bank["audio"], row_ids=image_ids)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xmr.errors import InputError
from xmr.index.ann import normalize
from xmr.models.config import is_part

# The query modalities for which each index gets offsets (every other base modality).
BANK_OF = {"audio": ("image", "text"), "image": ("audio", "text"), "text": ("audio", "image")}
PART = ":part"  # the suffix of a bank of partial queries: "audio:part", the clips


def bank_modality(bank: str) -> str:
    """The query modality of a bank: ``"audio"`` for ``"audio:part"``."""
    return bank.split(":")[0]


def bank_key(modality: str, seconds: float | None = None) -> str:
    """The bank whose offsets rank a query input of ``modality``: ``"audio:part"`` for a clip of
    at most :data:`~xmr.models.config.PART_SECONDS` seconds, else the modality itself
    (``"audio#2"`` stays as it is)."""
    if modality == "audio" and is_part(seconds):
        return modality + PART
    return modality


def row_offsets(vectors: np.ndarray, bank: np.ndarray, bank_ids: Sequence[str], *, k: int = 30,
                row_ids: Sequence[str] | None = None) -> np.ndarray:
    """``r(c) - mean r``: each row's mean cosine to its ``k`` nearest bank queries, centred.

    Args:
        vectors: (N, D) the index's rows.
        bank: (M, D) query vectors (any norm; normalised here).
        bank_ids: the item each bank query was made from.
        k: neighbours averaged (at most the bank's size).
        row_ids: the item of each row; a row's own item's bank queries are left out of its
            neighbours. ``None``: no row belongs to a bank item.

    Returns (N,) float32 offsets with mean 0.
    """
    import faiss

    x, b = normalize(vectors), normalize(bank)
    bank_ids = np.asarray([str(i) for i in bank_ids])
    if len(b) != len(bank_ids):
        raise InputError(f"{len(b)} bank queries but {len(bank_ids)} bank item ids")
    if not len(x):
        return np.zeros(0, np.float32)
    own = 0
    if row_ids is not None:
        if len(row_ids) != len(x):
            raise InputError(f"{len(x)} rows but {len(row_ids)} row item ids")
        own = int(np.unique(bank_ids, return_counts=True)[1].max()) if len(bank_ids) else 0
    k = min(int(k), len(b) - own)
    if k < 1:
        raise InputError(f"the query bank has {len(b)} queries: too few for hubness offsets")
    index = faiss.IndexFlatIP(b.shape[1])
    index.add(b)
    scores, labels = index.search(x, k + own)
    if row_ids is not None:  # drop the row's own item's queries, keep the k nearest others
        mine = bank_ids[labels] == np.asarray([str(i) for i in row_ids])[:, None]
        keep = np.cumsum(~mine, axis=1) <= k
        scores = np.where(~mine & keep, scores, 0.0)
        r = scores.sum(axis=1) / k
    else:
        r = scores.mean(axis=1)
    return (r - r.mean()).astype(np.float32)


def index_offsets(vectors: np.ndarray, row_ids: Sequence[str], target: str,
                  bank: Mapping[str, tuple[np.ndarray, list[str]]], *, k: int = 30) -> dict[str, np.ndarray]:
    """The ``target`` index's offsets for each bank of a query modality that queries it
    (:data:`BANK_OF`; ``"audio"`` and ``"audio:part"`` both query the images): ``{bank: (N,) offsets}``."""
    base = target.split("_")[0]
    out = {m: row_offsets(vectors, *bank[m], k=k, row_ids=row_ids)
           for m in bank if bank_modality(m) in BANK_OF.get(base, ()) and len(bank[m][0])}
    if not out:
        raise InputError(f"the query bank has no queries for the {target} index")
    return out


def query_bank(model: Any, rows: Any, *, n: int = 1200, seed: int = 0,
               clip_seconds: tuple[float, float] = (3.0, 6.0), batch_size: int = 32
               ) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Query vectors of a seeded sample of ``n`` manifest rows (training items), per bank.

    For each item, as the model has the modality and the item the media: its whole audio
    (windowed as indexed tracks are) and a clip of ``clip_seconds`` (drawn uniformly) at a random
    offset; its score image whole and cut to a run of about half its bars (its bar alignment;
    without one, the left or right half); its captions (the manifest's ``caption`` list, as
    :func:`~xmr.data.manifest.read_manifest` reads it). The banks are the modalities, and
    ``"audio:part"``: the clips alone. Items are embedded ``batch_size`` at a time, each vector as
    :func:`~xmr.index.query.encode_query` would embed it alone, but for the clips of the
    ``"audio"`` bank where the model has a head for short clips: that bank ranks the longer audio
    queries, which take the audio head, so its clips are embedded with the audio head too (with
    the part head's clips there, audio->image of whole test excerpts fell from 0.633 to 0.593 MRR).

    Returns ``{bank: ((M, D) vectors, M item ids)}``.
    """
    from xmr.data.manifest import bar_alignment
    from xmr.index.bars import crop_bars
    from xmr.index.query import embed_audio
    from xmr.media.audio import load_audio
    from xmr.media.image import load_image

    rng = np.random.default_rng(seed)
    rows = rows.reset_index(drop=True)
    pick = rows.iloc[np.sort(rng.choice(len(rows), min(int(n), len(rows)), replace=False))]
    sr = int(model.sample_rate)
    banks = [b for m in model.modalities for b in ((m, m + PART) if m == "audio" else (m,))]
    out: dict[str, tuple[list, list[str]]] = {m: ([], []) for m in banks}

    def embed(chunk) -> None:
        whole, clips, images, parts, texts, audio_ids, image_ids, text_ids = [], [], [], [], [], [], [], []
        for _, row in chunk.iterrows():
            item = str(row["id"])
            if "audio" in out and isinstance(row.get("audio"), str):
                wave = load_audio(row["audio"], sample_rate=sr)
                n_clip = int(rng.uniform(*clip_seconds) * sr)
                start = int(rng.integers(0, max(len(wave) - n_clip, 0) + 1))
                whole.append(wave)
                clips.append(wave[start:start + n_clip])
                audio_ids.append(item)
            if "image" in out and isinstance(row.get("image"), str):
                image = load_image(row["image"])
                bars = bar_alignment(row)
                if bars is not None and len(bars["bar_onsets"]) >= 2:
                    count = len(bars["bar_onsets"])
                    span = max(1, round(count * rng.uniform(0.4, 0.6)))
                    first = int(rng.integers(0, count - span + 1))
                    part = crop_bars(image, bars, first, first + span - 1)
                else:
                    half = image.width // 2
                    part = image.crop((0, 0, half, image.height) if rng.random() < 0.5
                                      else (half, 0, image.width, image.height))
                images.append(image)
                parts.append(part)
                image_ids.append(item)
            if "text" in out:
                captions = list(row.get("caption") or [])
                texts += captions
                text_ids += [item] * len(captions)
        if audio_ids:
            tracks = embed_audio(model, whole + clips, batch_size=batch_size)
            w, c = [t.vector for t in tracks[:len(whole)]], [t.vector for t in tracks[len(whole):]]
            # each bank in the space of its queries' head: longer audio takes the audio head
            plain = ([t.vector for t in embed_audio(model, clips, batch_size=batch_size, part_head=False)]
                     if model.has_part_head("audio") else c)
            for i, item in enumerate(audio_ids):
                out["audio"][0].extend((w[i], plain[i]))
                out["audio"][1].extend([item] * 2)
            out["audio" + PART][0].extend(c)
            out["audio" + PART][1].extend(audio_ids)
        if image_ids:
            v = normalize(model.encode("image", images + parts, batch_size=batch_size))
            for i, item in enumerate(image_ids):
                out["image"][0].extend((v[i], v[len(images) + i]))
                out["image"][1].extend([item] * 2)
        if text_ids:
            out["text"][0].extend(normalize(model.encode("text", texts, batch_size=batch_size)))
            out["text"][1].extend(text_ids)

    for start in range(0, len(pick), max(1, int(batch_size))):
        embed(pick.iloc[start:start + batch_size])
    return {m: (np.asarray(v, np.float32).reshape(len(v), -1), ids) for m, (v, ids) in out.items() if v}
