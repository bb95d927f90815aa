"""Scoring a checkpoint: embed a manifest split, evaluate every direction, or score human labels.

The layers, each usable alone (the trainer's hook and the app's Evaluate tab call the lower ones):

- :func:`evaluate_embeddings` -- arrays in, metrics out: every direction between views of
  different modalities, under the item protocol (one-to-one / multi-positive), the caption
  protocol and the graded protocol (see :mod:`xmr.eval.protocols`), each with its candidate-set
  size and random-chance values.
- :func:`embed_split` -- a model and manifest rows in, :class:`View` objects out. Audio is
  embedded as in the test protocol of Nakatsuka et al. (2023, Sec. 4.1.3): the mean of the
  embeddings of the model's window over crops with 50% overlap, re-normalised.
- :func:`evaluate_checkpoint` -- a checkpoint folder and a manifest in, an :class:`Evaluation`.
- :func:`evaluate_qrels_set` -- a checkpoint on a human-labelled set (``NAME.qrels`` +
  ``NAME.queries.jsonl``): nDCG@10, MAP, P@10, R@10 and judged@10.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.data.files import media_file
from xmr.errors import InputError, ManifestError
from xmr.eval import protocols
from xmr.eval.compare import compare_per_query
from xmr.eval.directions import score_directions
from xmr.eval.metrics import PerQuery, summarize
from xmr.index.query import embed_audio, encode_query

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

DEFAULT_KS = (1, 5, 10, 25, 50, 100)
# Metadata compared by the graded protocol, where the manifest has them (the demo corpus does).
DEFAULT_ATTRIBUTES = ("genre", "key", "mode", "meter", "tempo_term", "instrument", "voices", "register")
# Caption styles of the demo corpus: the column holding each; other manifests use ``caption``.
CAPTION_COLUMNS = {"full": "caption_full", "content": "caption_content"}
QRELS_MEASURES = ("ndcg_cut_10", "map", "P_10", "recall_10")


@dataclass
class View:
    """One side of retrieval: the embeddings of one modality and the item each row belongs to.

    Args:
        name: label in reports (``"audio"``, ``"audio_unseen"``, ``"image"``, ``"text[full]"``).
        modality: ``"audio"``, ``"image"`` or ``"text"``.
        vectors: (n, D) L2-normalised embeddings.
        item_ids: the item of each row (several rows may share an item: captions).
        texts: for a text view, the caption of each row.
        style: for a text view, its caption style (key of the ``captions`` mapping).
    """

    name: str
    modality: str
    vectors: np.ndarray
    item_ids: list[str]
    texts: list[str] | None = None
    style: str | None = None

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.item_ids = [str(i) for i in self.item_ids]
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.item_ids):
            raise InputError(f"view {self.name}: {self.vectors.shape} vectors for {len(self.item_ids)} items")


@dataclass
class Evaluation:
    """Result of an evaluation: ``metrics`` (JSON-ready) and per-query results for plots/tests.

    ``per_query[protocol][direction]`` is a :class:`xmr.eval.metrics.PerQuery`.
    """

    metrics: dict[str, Any]
    per_query: dict[str, dict[str, PerQuery]] = field(default_factory=dict)

    def table(self, protocol: str = "item") -> dict[str, dict[str, Any]]:
        """Direction -> metrics of one protocol."""
        return self.metrics["protocols"].get(protocol, {})


def evaluate_embeddings(
    views: Sequence[View],
    *,
    captions: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
    attribute_names: Sequence[str] = (),
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
) -> Evaluation:
    """Metrics of both directions of every pair of views of different modalities.

    Protocols: ``item`` (the same item is relevant; one-to-one, or multi-positive when a side
    has several rows per item), ``caption`` (text directions: items sharing a caption string,
    needs ``captions``), ``graded`` (nDCG@K only, grades = matching ``attribute_names``).

    Args:
        views: the embedded sides (see :class:`View`).
        captions: caption style -> item id -> captions, for the caption protocol.
        attributes: item id -> metadata, for the graded protocol.
        attribute_names: the metadata compared by the graded protocol (none: no graded protocol).
        ks: cut-offs K.
        chunk_size: query rows per chunk (memory bound); results do not depend on it.

    Example:
        >>> a = View("audio", "audio", np.eye(3), ["x", "y", "z"])
        >>> b = View("image", "image", np.eye(3), ["x", "y", "z"])
        >>> evaluate_embeddings([a, b], ks=(1,)).table()["audio→image"]["R@1"]
        1.0
    """
    by_name = {v.name: v for v in views}
    if len(by_name) != len(views):
        raise InputError("view names must be unique")
    metrics: dict[str, Any] = {
        "ks": list(ks),
        "views": {v.name: {"modality": v.modality, "rows": len(v.item_ids), "items": len(set(v.item_ids))}
                  for v in views},
        "protocols": {},
    }
    per_query: dict[str, dict[str, PerQuery]] = {}

    def record(protocol: str, direction: str, pq: PerQuery, keep=None):
        summary = summarize(pq)
        if keep is not None:
            chance = summary.get("chance", {})
            summary = {k: v for k, v in summary.items() if k in keep or k.startswith(keep)}
            summary["chance"] = {k: v for k, v in chance.items() if k.startswith("nDCG")}
        metrics["protocols"].setdefault(protocol, {})[direction] = summary
        per_query.setdefault(protocol, {})[direction] = pq

    vectors = {v.name: (v.vectors, v.item_ids) for v in views}
    modalities = {v.name: v.modality for v in views}

    def caption_rel(qn: str, cn: str, q_ids: list[str], c_ids: list[str]):
        q, c = by_name[qn], by_name[cn]
        text_side = q if q.modality == "text" else c if c.modality == "text" else None
        if not captions or text_side is None or text_side.style not in captions:
            return None
        return protocols.caption_relevance(q_ids, c_ids, captions[text_side.style],
                                           query_is_text=q is text_side, query_texts=q.texts,
                                           candidate_texts=c.texts)

    def graded_rel(qn: str, cn: str, q_ids: list[str], c_ids: list[str]):
        return protocols.attribute_grades(q_ids, c_ids, attributes, attribute_names)

    runs: list[tuple[str, Any, Any]] = [("item", None, None), ("caption", caption_rel, None)]
    if attributes and attribute_names:
        runs.append(("graded", graded_rel,
                     ("n_queries", "n_candidates", "n_queries_without_relevant", "mean_relevant", "nDCG")))
    for protocol, relevance, keep in runs:
        scored = score_directions(vectors, relevance, modalities=modalities, ks=ks, chunk_size=chunk_size)
        for direction, result in scored.items():
            record(protocol, direction, result.per_query, keep)
    if attribute_names and attributes:
        metrics["graded_attributes"] = list(attribute_names)
    return Evaluation(metrics=metrics, per_query=per_query)


# --------------------------------------------------------------------------------------------
# Embedding a manifest split


def _progress(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="item", leave=False)


def embed_audio_files(model: XmrModel, paths: Sequence, *, batch_size: int = 32,
                      progress: bool = False) -> np.ndarray:
    """(N, D) track vectors of audio files, embedded as the index embeds tracks
    (:func:`xmr.index.embed_audio`: the mean of 50%-overlap windows, re-normalised)."""
    from xmr.media.audio import load_audio

    out = np.zeros((len(paths), int(model.embed_dim)), dtype=np.float32)
    waves: list[np.ndarray] = []
    owner: list[int] = []

    def flush():
        if waves:
            out[owner] = np.stack([t.vector for t in embed_audio(model, waves, batch_size=batch_size)])
            waves.clear()
            owner.clear()

    for i, path in enumerate(_progress(paths, "embed audio", progress)):
        waves.append(load_audio(path, sample_rate=model.sample_rate))
        owner.append(i)
        if len(waves) >= batch_size:  # a bounded number of decoded files at a time
            flush()
    flush()
    return out


def _caption_lists(df, style: str) -> list[list[str]]:
    """Each row's captions of one style (a list, possibly empty)."""
    column = CAPTION_COLUMNS.get(style)
    if column and column in df.columns:
        source = df[column]
    elif style == "full":
        source = df["caption"]
    else:
        raise InputError(f"the manifest has no {style!r} captions (column {column!r})")
    out = []
    for value in source:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append([])
        elif isinstance(value, str):
            out.append([value] if value.strip() else [])
        else:
            out.append([str(v) for v in value if str(v).strip()])
    return out


def caption_styles_of(style: str) -> tuple[str, ...]:
    """``"both"`` -> ("full", "content"); otherwise the one style."""
    if style == "both":
        return ("full", "content")
    if style not in CAPTION_COLUMNS:
        raise InputError(f"caption style must be full, content or both, got {style!r}")
    return (style,)


def _has_media(df, column: str) -> list[int]:
    if column not in df.columns:
        return []
    return [i for i, v in enumerate(df[column].tolist()) if isinstance(v, str) and v]


def embed_split(model, df, *, manifest_dir=None, caption_styles: Sequence[str] = ("full",),
                include_unseen: bool = True, batch_size: int = 32, progress: bool = False,
                modalities: Sequence[str] | None = None) -> list[View]:
    """Embed the items of a manifest frame with a model, one :class:`View` per modality/style.

    Args:
        model: an ``XmrModel`` (``xmr.load_model``).
        df: manifest rows (``read_manifest``); items without a modality are left out of its view.
        manifest_dir: folder relative media paths are relative to.
        caption_styles: caption styles to embed as separate text views (``"full"``, ``"content"``).
        include_unseen: also embed the ``audio_unseen`` view where the manifest has it.
        batch_size: items per forward pass.
        progress: show progress bars.
        modalities: embed only these (default: every modality of the model).
    """
    wanted = set(model.modalities if modalities is None else modalities) & set(model.modalities)
    views: list[View] = []
    ids = [str(i) for i in df["id"].tolist()]
    rows = [r for _, r in df.iterrows()]
    audio_cols = ["audio"] + (["audio_unseen"] if include_unseen else [])
    for column in audio_cols:
        idx = _has_media(df, column)
        if "audio" in wanted and idx:
            paths = [media_file(rows[i], column, manifest_dir=manifest_dir) for i in idx]
            vecs = embed_audio_files(model, paths, batch_size=batch_size, progress=progress)
            views.append(View(column, "audio", vecs, [ids[i] for i in idx]))
    idx = _has_media(df, "image")
    if "image" in wanted and idx:
        paths = [str(media_file(rows[i], "image", manifest_dir=manifest_dir)) for i in idx]
        vecs = model.encode("image", paths, batch_size=batch_size)
        views.append(View("image", "image", vecs, [ids[i] for i in idx]))
    if "text" in wanted:
        for style in caption_styles:
            lists = _caption_lists(df, style)
            texts = [t for caps in lists for t in caps]
            owners = [ids[i] for i, caps in enumerate(lists) for _ in caps]
            if texts:
                vecs = model.encode("text", texts, batch_size=batch_size)
                views.append(View(f"text[{style}]", "text", vecs, owners, texts=texts, style=style))
    return views


def _attributes_of(df, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    cols = [n for n in names if n in df.columns]
    return {str(r["id"]): {n: r[n] for n in cols} for _, r in df.iterrows()}


def select_split(df, split: str | None, limit: int | None):
    """Rows of one split (all when ``split`` is None), first ``limit`` of them by id."""
    if split:
        df = df[df["split"].astype(str) == split]
        if df.empty:
            raise InputError(f"the manifest has no items in split {split!r}")
    df = df.sort_values("id", kind="stable")
    if limit is not None:
        if limit < 2:
            raise InputError("--limit must be at least 2 (retrieval needs several candidates)")
        df = df.iloc[:limit]
    return df


def load_manifest(manifest) -> tuple[Any, Path]:
    """Read a manifest file with the package's reader; returns (frame, its folder)."""
    from xmr.data.manifest import read_manifest

    df = read_manifest(manifest)
    return df, Path(df.attrs.get("manifest_dir", Path(manifest).resolve().parent))


def evaluate_checkpoint(
    *,
    checkpoint=None,
    manifest,
    split: str | None = "test",
    caption_style: str = "full",
    limit: int | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    attribute_names: Sequence[str] | None = None,
    include_unseen: bool = True,
    batch_size: int = 32,
    model=None,
    progress: bool = False,
) -> Evaluation:
    """Embed a manifest split with a checkpoint and evaluate every direction.

    Args:
        checkpoint: checkpoint folder (or pass ``model``).
        manifest: manifest file (CSV, JSONL, Parquet).
        split: the split to evaluate (None: every row).
        caption_style: ``"full"``, ``"content"`` or ``"both"`` (demo-corpus caption styles).
        limit: evaluate only the first N items of the split (by id).
        ks: cut-offs K.
        attribute_names: metadata for the graded protocol (default: those of
            :data:`DEFAULT_ATTRIBUTES` the manifest has).
        include_unseen: also evaluate the unseen-soundfont audio where the manifest has it.
        batch_size: items per forward pass.
        model: an already loaded model (skips loading ``checkpoint``).
        progress: show progress bars.

    Example:
        >>> ev = evaluate_checkpoint(checkpoint="checkpoints/demo",
        ...                          manifest="assets/demo/manifest.parquet")  # doctest: +SKIP
        >>> ev.table()["audio→image"]["MRR"], ev.table()["audio→image"]["n_candidates"]  # doctest: +SKIP
    """
    import xmr

    if model is None:
        if checkpoint is None:
            raise InputError("evaluate_checkpoint needs a checkpoint folder or a model")
        model = xmr.load_model(checkpoint)
    df, manifest_dir = load_manifest(manifest)
    df = select_split(df, split, limit)
    styles = caption_styles_of(caption_style)
    views = embed_split(model, df, manifest_dir=manifest_dir, caption_styles=styles,
                        include_unseen=include_unseen, batch_size=batch_size, progress=progress)
    if len({v.modality for v in views}) < 2:
        raise InputError("the split needs items with at least two modalities to evaluate retrieval")
    captions = {}
    for style in styles:
        lists = _caption_lists(df, style)
        captions[style] = {str(i): caps for i, caps in zip(df["id"].tolist(), lists, strict=True)}
    wanted = DEFAULT_ATTRIBUTES if attribute_names is None else attribute_names
    names = [n for n in wanted if n in df.columns]
    attrs = _attributes_of(df, names) if names else None
    ev = evaluate_embeddings(views, captions=captions, attributes=attrs, attribute_names=names, ks=ks)
    ev.metrics.update({
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "fingerprint": getattr(model, "fingerprint", None),
        "manifest": str(manifest),
        "split": split,
        "n_items": int(len(df)),
        "caption_styles": list(styles),
    })
    return ev


def compare_evaluations(a: Evaluation, b: Evaluation, *, metrics: Sequence[str] = ("MRR", "mAP", "R@1"),
                        n_resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired tests between two evaluations of the same queries, per protocol, direction and metric.

    Returns ``{protocol: {direction: {metric: compare_per_query(...)}}}`` (``a`` minus ``b``).
    """
    out: dict[str, Any] = {}
    for protocol, dirs in a.per_query.items():
        for direction, pq_a in dirs.items():
            pq_b = b.per_query.get(protocol, {}).get(direction)
            if pq_b is None or len(pq_a.n_relevant) != len(pq_b.n_relevant):
                continue
            names = ["nDCG@10"] if protocol == "graded" else list(metrics)
            for name in names:
                try:
                    va, vb = pq_a.values(name), pq_b.values(name)
                except InputError:
                    continue
                out.setdefault(protocol, {}).setdefault(direction, {})[name] = compare_per_query(
                    va, vb, n_resamples=n_resamples, seed=seed)
    return out


# --------------------------------------------------------------------------------------------
# Human labels


def _query_source(row: Mapping[str, Any]) -> str | None:
    for key in ("source_item_id", "source_item", "item_id", "item"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return None


def evaluate_qrels_set(
    *,
    qrels,
    queries=None,
    manifest,
    checkpoint=None,
    model=None,
    depth: int = 1000,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint on a human-labelled set (TREC qrels + queries JSONL).

    Every item of the manifest (all splits: the labels were made on the full index) is a
    candidate in the modalities the qrels judge (docnos ``"<modality>:<item_id>"``; a text item's
    score is the best of its captions). A query made from a corpus item (``source_item_id``) does
    not retrieve that same item in its own modality. The run keeps the top ``depth`` results.

    Returns:
        ``{"measures": {nDCG@10, MAP, P@10, R@10, judged@10 (means)}, "per_query": {...},
        "n_queries", "n_candidates", "run": {qid: {docno: score}}}``; judged@10 is the number
        of the top 10 that have a judgement, so unjudged results (counted as not relevant by
        trec_eval) are visible.
    """
    import xmr
    from xmr.eval.queries import find_queries_file, read_queries
    from xmr.eval.trec import evaluate_qrels, judged_at, ranked, read_qrels

    if model is None:
        if checkpoint is None:
            raise InputError("evaluate_qrels_set needs a checkpoint folder or a model")
        model = xmr.load_model(checkpoint)
    qrels_path = Path(qrels)
    qrels_d = read_qrels(qrels_path)
    if not qrels_d:
        raise InputError(f"{qrels_path}: no judgements")
    qpath = Path(queries) if queries else find_queries_file(qrels_path)
    query_rows = [r for r in read_queries(qpath) if str(r["qid"]) in qrels_d]
    if not query_rows:
        raise InputError(f"none of the queries in {qpath} has judgements in {qrels_path}")
    targets = sorted({d.split(":", 1)[0] for docs in qrels_d.values() for d in docs})
    bad = [t for t in targets if t not in ("audio", "image", "text")]
    if bad:
        raise InputError(f"qrels docnos must look like '<modality>:<item_id>', got modality {bad[0]!r}")
    df, manifest_dir = load_manifest(manifest)
    views = embed_split(model, df, manifest_dir=manifest_dir, include_unseen=False,
                        batch_size=batch_size, progress=progress, modalities=targets)
    cand_vecs: dict[str, np.ndarray] = {}
    cand_ids: dict[str, list[str]] = {}
    for v in views:
        if v.modality in targets and v.modality not in cand_vecs:
            cand_vecs[v.modality], cand_ids[v.modality] = v.vectors, v.item_ids
    rows_by_id = {str(r["id"]): r for _, r in df.iterrows()}

    # Each query through the one query path of the app and ``xmr search``.
    qvec: dict[str, np.ndarray] = {}
    for r in query_rows:
        modality = r["modality"]
        if modality == "text":
            text = r.get("text") or None
            if text is None and _query_source(r) in rows_by_id:
                caps = _caption_lists(df[df["id"].astype(str) == _query_source(r)], "full")[0]
                text = caps[0] if caps else None
            if not text:
                raise InputError(f"text query {r['qid']} has no text")
            value: Any = str(text)
        elif r.get("media"):  # made absolute by read_queries
            value = r["media"]
        elif _query_source(r) in rows_by_id:
            value = str(media_file(rows_by_id[_query_source(r)], modality, manifest_dir=manifest_dir))
        else:
            raise InputError(f"{modality} query {r['qid']} has neither a media path nor a source item")
        qvec[str(r["qid"])] = encode_query(model, **{modality: value}).vector

    run: dict[str, dict[str, float]] = {}
    for r in query_rows:
        qid = str(r["qid"])
        src = _query_source(r)
        docs: dict[str, float] = {}
        judged_mods = {d.split(":", 1)[0] for d in qrels_d[qid]}
        for modality in sorted(judged_mods):
            if modality not in cand_vecs:
                raise ManifestError(f"the manifest has no {modality} items to rank for query {qid}")
            sims = cand_vecs[modality] @ qvec[qid]
            for item, s in zip(cand_ids[modality], sims.tolist(), strict=True):
                if modality == r["modality"] and item == src:
                    continue
                doc = f"{modality}:{item}"
                if s > docs.get(doc, -np.inf):  # a text item scores its best caption
                    docs[doc] = float(s)
        run[qid] = dict(ranked(docs)[:depth])

    per_query = evaluate_qrels(qrels_d, run, QRELS_MEASURES)
    judged = judged_at(qrels_d, run, k=10)
    names = {"ndcg_cut_10": "nDCG@10", "map": "MAP", "P_10": "P@10", "recall_10": "R@10"}
    pq_out = {qid: {**{names[k]: v for k, v in vals.items() if k in names}, "judged@10": judged.get(qid, 0)}
              for qid, vals in per_query.items()}
    measures = {name: float(np.mean([v[name] for v in pq_out.values()]))
                for name in ("nDCG@10", "MAP", "P@10", "R@10", "judged@10")}
    return {
        "qrels": str(qrels_path),
        "queries": str(qpath),
        "n_queries": len(pq_out),
        "n_candidates": {m: len(cand_ids[m]) for m in cand_ids},
        "depth": depth,
        "measures": measures,
        "per_query": pq_out,
        "run": run,
        "fingerprint": getattr(model, "fingerprint", None),
    }
