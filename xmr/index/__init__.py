"""Indexes and search: embeddings of a collection, FAISS indexes per modality, multi-modal queries.

Stages (each a function over folders; the CLI ``xmr embed`` / ``xmr index build`` / ``xmr search``
calls the same functions)::

    embed_manifest(checkpoint=..., manifest=..., out=emb)   # per-modality float32 arrays + ids
    build_indexes(embeddings=emb, out=idx)                  # one tuned FAISS index per modality
    store = IndexStore.load(idx, fingerprint=model.fingerprint)
    query = encode_query(model, text="a reel", image="score.png", weights={"image": 0.5})
    hits = store.search(query.vector, targets=("audio",), k=10)   # the one query path: app, CLI, eval
"""

from xmr.index.fusion import fuse_queries
from xmr.index.query import EncodedQuery, QueryLimits, embed_audio, encode_query
from xmr.index.store import Hit, IndexStore
from xmr.index.windows import TrackEmbedding, embed_tracks, pool_windows

__all__ = [
    "EncodedQuery",
    "Hit",
    "IndexStore",
    "QueryLimits",
    "TrackEmbedding",
    "build_indexes",
    "embed_audio",
    "embed_manifest",
    "embed_tracks",
    "encode_query",
    "fuse_queries",
    "pool_windows",
    "search",
]


def __getattr__(name):
    # The embedding and search stages pull in torch/pandas; import them only when asked for.
    if name in ("embed_manifest", "merge_shards", "load_embeddings"):
        from xmr.index import embed

        return getattr(embed, name)
    if name in ("build_indexes", "search"):
        from xmr.index import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'xmr.index' has no attribute {name!r}")
