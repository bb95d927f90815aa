"""Evaluation protocols: which candidates are relevant to which query.

Every protocol returns a relevance matrix for :func:`xmr.eval.retrieval_metrics` (a scipy.sparse
matrix or a function of a row range, so that large evaluations never hold a dense Q x N matrix):

- :func:`item_relevance` -- relevant means "the same item". With one row per item on both sides
  this is the **one-to-one** protocol (audio <-> image). With several rows per item on one side
  it is the **multi-positive** protocol of the VSE++ evaluation: an image with 5 captions as the
  query has 5 relevant captions and ``R@K`` / ``MRR`` count the best-ranked one; each caption as
  a query has its one image.
- :func:`shared_key_relevance` -- relevant means "shares a key". With caption texts as keys this
  is the demo corpus's **caption relevance**: every item whose caption is the same string as the
  query's is relevant (generic captions repeat, and no model can tell identical captions apart).
- :func:`attribute_grades` -- **graded** relevance for nDCG: the number of metadata attributes
  (genre, key, mode, meter, instrument, ...) on which query and candidate agree; the item itself
  gets one more than the number of attributes, so it is always the best result.
- :func:`qrels_relevance` -- **human labels**: grades from TREC qrels.

:func:`directions` lists both directions of every pair of views of different modalities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from xmr.errors import InputError


def _csr(rows: list[int], cols: list[int], shape: tuple[int, int], data=None):
    import scipy.sparse as sp

    data = np.ones(len(rows), dtype=bool) if data is None else np.asarray(data)
    return sp.csr_matrix((data, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
                         shape=shape)


def shared_key_relevance(query_keys: Sequence[Iterable[str]], candidate_keys: Sequence[Iterable[str]]):
    """Sparse boolean (Q, N) relevance: query q and candidate c share at least one key.

    Args:
        query_keys: for each query row, its keys (e.g. ``{"bach_001"}`` or a set of caption texts).
        candidate_keys: the same for each candidate row.

    Example:
        >>> shared_key_relevance([{"a"}, {"b", "c"}], [{"c"}, {"a"}, {"b"}]).toarray().astype(int)
        array([[0, 1, 0],
               [1, 0, 1]])
    """
    by_key: dict[str, list[int]] = {}
    for c, keys in enumerate(candidate_keys):
        for k in set(keys):
            by_key.setdefault(k, []).append(c)
    rows: list[int] = []
    cols: list[int] = []
    for q, keys in enumerate(query_keys):
        hit = sorted({c for k in set(keys) for c in by_key.get(k, ())})
        rows.extend([q] * len(hit))
        cols.extend(hit)
    return _csr(rows, cols, (len(query_keys), len(candidate_keys)))


def item_relevance(query_items: Sequence[str], candidate_items: Sequence[str]):
    """Sparse boolean (Q, N) relevance: the candidate row belongs to the query row's item.

    Example:
        >>> item_relevance(["x", "y"], ["x", "x", "y"]).toarray().astype(int)  # x has two captions
        array([[1, 1, 0],
               [0, 0, 1]])
    """
    return shared_key_relevance([(str(i),) for i in query_items], [(str(i),) for i in candidate_items])


def caption_relevance(query_items: Sequence[str], candidate_items: Sequence[str],
                      captions: Mapping[str, Sequence[str]], *, query_is_text: bool,
                      query_texts: Sequence[str] | None = None, candidate_texts: Sequence[str] | None = None):
    """Caption relevance between a media side and a text side: items sharing a caption are relevant.

    A text row's key is its caption string; a media row's keys are all captions of its item
    (``captions[item_id]``), so an audio query's relevant captions are every caption equal to one
    of its own, and a caption query's relevant audio items are all items that have that caption.

    Args:
        query_items, candidate_items: item id of each row.
        captions: item id -> its captions (the caption style under evaluation).
        query_is_text: whether the query side is the text side.
        query_texts, candidate_texts: the caption of each text row (needed on the text side).
    """
    def media_keys(items):
        return [tuple(captions.get(str(i), ())) for i in items]

    if query_is_text:
        if query_texts is None:
            raise InputError("caption relevance needs the query captions")
        return shared_key_relevance([(t,) for t in query_texts], media_keys(candidate_items))
    if candidate_texts is None:
        raise InputError("caption relevance needs the candidate captions")
    return shared_key_relevance(media_keys(query_items), [(t,) for t in candidate_texts])


def attribute_grades(query_items: Sequence[str], candidate_items: Sequence[str],
                     attributes: Mapping[str, Mapping[str, object]], names: Sequence[str]) -> Callable:
    """Graded relevance for nDCG: number of matching attributes (+ the item itself on top).

    Returns a function ``f(start, stop) -> (stop - start, N) int16`` array (computed per chunk
    of queries, so memory stays bounded). Grade of (q, c) = number of ``names`` on which the two
    items' values are equal and not missing; the same item gets ``len(names) + 1``.

    Args:
        query_items, candidate_items: item id of each row.
        attributes: item id -> {attribute name: value}.
        names: the attributes to compare (e.g. ``("genre", "key", "mode", "meter", "instrument")``).

    Example:
        >>> attrs = {"a": {"key": "G", "meter": "3/4"}, "b": {"key": "G", "meter": "4/4"}}
        >>> attribute_grades(["a"], ["a", "b"], attrs, ["key", "meter"])(0, 1).tolist()
        [[3, 1]]
    """
    if not names:
        raise InputError("graded relevance needs at least one attribute name")
    qi = [str(i) for i in query_items]
    ci = [str(i) for i in candidate_items]
    codes_q, codes_c = [], []
    for name in names:
        vocab: dict[object, int] = {}

        def code(item, vocab=vocab, name=name):
            value = attributes.get(item, {}).get(name)
            if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
                return -1  # missing never matches
            return vocab.setdefault(value, len(vocab))

        codes_q.append(np.array([code(i) for i in qi], dtype=np.int64))
        codes_c.append(np.array([code(i) for i in ci], dtype=np.int64))
    item_vocab = {v: k for k, v in enumerate(dict.fromkeys(qi + ci))}
    item_q = np.array([item_vocab[i] for i in qi], dtype=np.int64)
    item_c = np.array([item_vocab[i] for i in ci], dtype=np.int64)
    top = len(names) + 1

    def grades(start: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - start, len(ci)), dtype=np.int16)
        for cq, cc in zip(codes_q, codes_c, strict=True):
            out += (cq[start:stop, None] == cc[None, :]) & (cc[None, :] >= 0)
        same = item_q[start:stop, None] == item_c[None, :]
        out[same] = top
        return out

    grades.shape = (len(qi), len(ci))  # read by callers that need the matrix size
    return grades


def qrels_relevance(qrels: Mapping[str, Mapping[str, int]], qids: Sequence[str], docnos: Sequence[str]):
    """Sparse integer (Q, N) grades from qrels; unjudged pairs are 0 (not relevant)."""
    col = {str(d): j for j, d in enumerate(docnos)}
    rows, cols, data = [], [], []
    for q, qid in enumerate(qids):
        for doc, grade in qrels.get(str(qid), {}).items():
            if doc in col and int(grade) > 0:
                rows.append(q)
                cols.append(col[doc])
                data.append(int(grade))
    return _csr(rows, cols, (len(qids), len(docnos)), data=np.asarray(data, dtype=np.int64))


def directions(views: Mapping[str, str]) -> list[tuple[str, str]]:
    """Both directions of every pair of views whose modalities differ.

    Args:
        views: view name -> modality (e.g. ``{"audio": "audio", "text[content]": "text"}``).

    Example:
        >>> directions({"audio": "audio", "image": "image", "text": "text"})[:3]
        [('audio', 'image'), ('image', 'audio'), ('audio', 'text')]
    """
    names = list(views)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if views[a] != views[b]:
                out += [(a, b), (b, a)]
    return out
