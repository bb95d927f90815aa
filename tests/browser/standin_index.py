"""A stand-in for ``xmr.index`` used only while that package is not in the tree yet.

Exact inner-product search over the stored vectors with the documented interface
(``IndexStore.load(dir, fingerprint=)``, ``.search(vectors, targets=, k=)``, ``fuse_queries``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xmr.errors import CheckpointMismatchError


def fuse_queries(vectors, weights):
    acc = sum(float(w) * np.asarray(v, np.float32) / np.linalg.norm(v) for v, w in zip(vectors, weights,
                                                                                         strict=True))
    return (acc / np.linalg.norm(acc)).astype(np.float32)


class IndexStore:
    def __init__(self, vecs, ids, fingerprint):
        self._vecs, self._ids, self.fingerprint = vecs, ids, fingerprint

    @property
    def modalities(self):
        return list(self._vecs)

    @classmethod
    def load(cls, folder, *, fingerprint=None):
        folder = Path(folder)
        meta = json.loads((folder / "standin.json").read_text())
        if fingerprint is not None and fingerprint != meta["fingerprint"]:
            raise CheckpointMismatchError(f"index built by {meta['fingerprint']}, not {fingerprint}")
        vecs = {m: np.load(folder / f"{m}.npy") for m in meta["ids"]}
        return cls(vecs, meta["ids"], meta["fingerprint"])

    def vectors(self, modality):
        return self._vecs[modality], self._ids[modality]

    def search(self, query_vectors, targets=("audio", "image", "text"), k=10, filters=None):
        out = []
        for q in np.atleast_2d(query_vectors):
            hits = []
            for m in targets:
                s = self._vecs[m] @ q
                for i in np.argsort(-s, kind="stable")[:k]:
                    hits.append({"id": self._ids[m][i], "modality": m, "score": float(s[i])})
            out.append(sorted(hits, key=lambda h: -h["score"])[:k])
        return out


def build(checkpoint, manifest, out):
    import xmr
    from xmr.data.manifest import read_manifest

    model = xmr.load_model(checkpoint)
    df = read_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = {}
    for m, col in (("audio", "audio"), ("image", "image"), ("text", "caption")):
        inputs = list(df[col]) if m != "text" else [c[0] for c in df[col]]
        np.save(out / f"{m}.npy", model.encode(m, inputs))
        ids[m] = list(df["id"])
    (out / "standin.json").write_text(json.dumps({"fingerprint": model.fingerprint, "ids": ids}))
    return out


def install():
    """Put the stand-in into ``xmr.index`` when the real store is not there."""
    import xmr.index as real

    if not hasattr(real, "IndexStore"):
        real.IndexStore = IndexStore
        real.fuse_queries = fuse_queries
