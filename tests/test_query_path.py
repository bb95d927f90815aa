"""One query path: the app's service, ``xmr search`` and ``xmr eval`` give the same vector and ranking.

All three call :func:`xmr.index.query.encode_query`; the test records what it returns in each, and
compares the rankings (the app and the CLI search the index, ``xmr eval`` scores every manifest
item by brute force) on the tiny demo: real checkpoint, corpus excerpts, indexes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xmr.cli import main

K = 5


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_checkpoint, tiny_corpus) -> dict[str, str]:
    from browser.tiny_demo import make_demo

    return make_demo(tmp_path_factory.mktemp("query_path"), tiny_checkpoint, tiny_corpus)


@pytest.fixture(scope="module")
def service(demo):
    from xmr.app.service import RetrievalService, ServiceConfig

    cfg = ServiceConfig(checkpoint=Path(demo["XMR_CHECKPOINT"]), index=Path(demo["XMR_INDEX"]),
                        manifest=Path(demo["XMR_MANIFEST"]), labels_db=Path(demo["XMR_LABELS_DB"]),
                        cache_dir=Path(demo["XMR_CACHE_DIR"]))
    return RetrievalService.from_config(cfg)


@pytest.fixture()
def recorded(monkeypatch) -> list[np.ndarray]:
    """Every query vector :func:`encode_query` returns, in the CLI's and the evaluator's modules."""
    import xmr.eval.evaluate
    import xmr.index.pipeline
    from xmr.index import query

    seen: list[np.ndarray] = []

    def spy(*args, **kwargs):
        out = query.encode_query(*args, **kwargs)
        seen.append(out.vector.copy())
        return out

    monkeypatch.setattr(xmr.index.pipeline, "encode_query", spy)
    monkeypatch.setattr(xmr.eval.evaluate, "encode_query", spy)
    return seen


def _queries(service) -> dict[str, dict[str, str]]:
    items = sorted(service.manifest["id"])
    return {"text": {"text": "a slow chorale for organ in a minor key"},
            "audio": {"audio": str(service.media(items[2], "audio"))},
            "image": {"image": str(service.media(items[3], "image"))}}


@pytest.mark.parametrize("modality", ["text", "audio", "image"])
def test_app_cli_and_eval_share_vector_and_ranking(service, demo, recorded, modality, tmp_path, capsys):
    from xmr.eval.evaluate import evaluate_qrels_set

    inputs = _queries(service)[modality]
    target = "image" if modality == "audio" else "audio"

    # the app
    app_query = service.encode_query(**inputs)
    app_hits = service.search(app_query, targets=(target,), k=K)
    assert len(app_hits) == K

    # the CLI, as the shell runs it
    rc = main(["search", "--index", demo["XMR_INDEX"], f"--{modality}", inputs[modality], "--target", target,
               "-k", str(K), "--json"])
    assert rc == 0
    cli_hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    # xmr eval on a labelled set holding this one query
    queries = tmp_path / "set.queries.jsonl"
    row = {"qid": "q1", "modality": modality, ("text" if modality == "text" else "media"): inputs[modality]}
    queries.write_text(json.dumps(row) + "\n")
    qrels = tmp_path / "set.qrels"
    qrels.write_text(f"q1 0 {target}:{app_hits[0].item_id} 1\n")
    result = evaluate_qrels_set(qrels=qrels, queries=queries, manifest=demo["XMR_MANIFEST"],
                                checkpoint=demo["XMR_CHECKPOINT"])
    eval_ranked = sorted(result["run"]["q1"].items(), key=lambda kv: (-kv[1], kv[0]))[:K]

    # one vector: the CLI's and the evaluator's calls returned the app's
    assert len(recorded) == 2
    for vector in recorded:
        np.testing.assert_allclose(vector, app_query.vector, atol=1e-6)
    # one ranking
    app_ids = [h.item_id for h in app_hits]
    assert [h["id"] for h in cli_hits] == app_ids
    assert [doc for doc, _ in eval_ranked] == [f"{target}:{i}" for i in app_ids]
    np.testing.assert_allclose([h["score"] for h in cli_hits], [h.score for h in app_hits], atol=1e-5)
    np.testing.assert_allclose([s for _, s in eval_ranked], [h.score for h in app_hits], atol=1e-5)


def test_fused_query_is_the_same_in_the_app_and_the_cli(service, demo, recorded, capsys):
    inputs = _queries(service)
    weights = {"image": 0.5, "text": 1.0}
    app_query = service.encode_query(image=inputs["image"]["image"], text=inputs["text"]["text"],
                                     weights=weights)
    app_hits = service.search(app_query, targets=("audio", "image"), k=K)
    # the CLI's --weights go in the one order of the inputs: audio, image, text
    rc = main(["search", "--index", demo["XMR_INDEX"], "--text", inputs["text"]["text"],
               "--image", inputs["image"]["image"], "--weights", "0.5,1", "--target", "audio,image",
               "-k", str(K), "--json"])
    assert rc == 0
    cli_hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(recorded[0], app_query.vector, atol=1e-6)
    assert [(h["id"], h["modality"]) for h in cli_hits] == [(h.item_id, h.modality) for h in app_hits]
    assert len({h.item_id for h in app_hits}) == K  # every item once over both targets
