"""Protocols, evaluate_embeddings, reports and plots, and `xmr eval` end to end on a tiny checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image

from xmr.cli import main
from xmr.errors import InputError
from xmr.eval import protocols
from xmr.eval.evaluate import View, compare_evaluations, evaluate_embeddings
from xmr.eval.report import write_report


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _views(rng, n_items=12, noise=0.6):
    """Audio, image, and two captions per item; items 0-3 share a caption string."""
    base = rng.normal(size=(n_items, 8))
    ids = [f"it{i:02d}" for i in range(n_items)]
    captions = {}
    for i, item in enumerate(ids):
        shared = "a chorale for organ" if i < 4 else f"a reel number {i}"
        captions[item] = [shared, f"caption two of {item}"]
    texts = [t for item in ids for t in captions[item]]
    owners = [item for item in ids for _ in captions[item]]
    t_vecs = np.repeat(base, 2, axis=0) + noise * rng.normal(size=(2 * n_items, 8))
    views = [
        View("audio", "audio", _unit(base + noise * rng.normal(size=base.shape)), ids),
        View("image", "image", _unit(base + noise * rng.normal(size=base.shape)), ids),
        View("text[full]", "text", _unit(t_vecs), owners, texts=texts, style="full"),
    ]
    return views, {"full": captions}


def test_multi_positive_counts_best_caption_and_every_caption_query():
    rng = np.random.default_rng(0)
    views, _ = _views(rng)
    ev = evaluate_embeddings(views, ks=(1, 5))
    audio, text = views[0], views[2]
    s = audio.vectors @ text.vectors.T  # (12 items, 24 captions)
    # audio→text: the best-ranked of an item's 2 captions counts (VSE++ image→text).
    best = []
    for i in range(12):
        order = np.argsort(-s[i], kind="stable")
        best.append(min(int(np.nonzero(order == 2 * i + k)[0][0]) + 1 for k in (0, 1)))
    m = ev.table()["audio→text[full]"]
    assert m["R@1"] == pytest.approx(np.mean(np.array(best) <= 1))
    assert m["MRR"] == pytest.approx(np.mean(1 / np.array(best)))
    assert (m["n_queries"], m["n_candidates"], m["mean_relevant"]) == (12, 24, 2.0)
    # text→audio: every caption is a query with its one item.
    m = ev.table()["text[full]→audio"]
    assert (m["n_queries"], m["n_candidates"], m["mean_relevant"]) == (24, 12, 1.0)
    assert m["chance"]["R@1"] == pytest.approx(1 / 12)
    assert set(ev.table()) == {
        "audio→image",
        "image→audio",
        "audio→text[full]",
        "text[full]→audio",
        "image→text[full]",
        "text[full]→image",
    }


def test_caption_protocol_marks_items_sharing_a_caption():
    rng = np.random.default_rng(1)
    views, captions = _views(rng)
    ev = evaluate_embeddings(views, captions=captions, ks=(1, 5))
    m = ev.table("caption")["text[full]→audio"]
    # 4 items share "a chorale for organ" -> those 4 captions have 4 relevant items each.
    pq = ev.per_query["caption"]["text[full]→audio"]
    assert pq.n_relevant.tolist()[:8] == [4, 1, 4, 1, 4, 1, 4, 1]
    assert m["mean_relevant"] == pytest.approx((16 + 4 + 16) / 24)
    rel = protocols.caption_relevance(
        ["it00", "it05"],
        views[2].item_ids,
        captions["full"],
        query_is_text=False,
        candidate_texts=views[2].texts,
    ).toarray()
    assert rel[0].sum() == 5  # its own two captions + the shared caption of items 1-3
    assert rel[1].sum() == 2
    assert "audio→image" not in ev.table("caption")


def test_graded_grades_equal_a_plain_loop():
    attrs = {
        "a": {"key": "G", "meter": "3/4", "genre": "reel"},
        "b": {"key": "G", "meter": "4/4"},
        "c": {"key": "D", "meter": "3/4", "genre": "reel"},
    }
    names = ["key", "meter", "genre"]
    f = protocols.attribute_grades(["a", "b", "c"], ["c", "b", "a"], attrs, names)
    got = f(0, 3)
    for qi, q in enumerate("abc"):
        for ci, c in enumerate("cba"):
            want = (
                4
                if q == c
                else sum(attrs[q].get(n) is not None and attrs[q].get(n) == attrs[c].get(n) for n in names)
            )
            assert got[qi, ci] == want
    rng = np.random.default_rng(2)
    views, _ = _views(rng, n_items=3)
    attrs = {"it00": attrs["a"], "it01": attrs["b"], "it02": attrs["c"]}
    ev = evaluate_embeddings(views[:2], attributes=attrs, attribute_names=names, ks=(1, 2))
    g = ev.table("graded")["audio→image"]
    assert set(k for k in g if k.startswith("nDCG")) == {"nDCG@1", "nDCG@2"}
    assert "MRR" not in g and 0 < g["chance"]["nDCG@2"] < 1


def test_chunked_evaluation_matches():
    rng = np.random.default_rng(3)
    views, captions = _views(rng)
    a = evaluate_embeddings(views, captions=captions, ks=(1, 5), chunk_size=3).metrics
    b = evaluate_embeddings(views, captions=captions, ks=(1, 5)).metrics
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_report_files_and_comparison(tmp_path):
    rng = np.random.default_rng(4)
    views, captions = _views(rng, noise=0.3)
    good = evaluate_embeddings(views, captions=captions, ks=(1, 5, 10))
    bad_views, _ = _views(np.random.default_rng(5), noise=3.0)
    bad = evaluate_embeddings(bad_views, captions=captions, ks=(1, 5, 10))
    cmp = compare_evaluations(good, bad)
    r = cmp["item"]["audio→image"]["MRR"]
    assert r["mean_a"] == pytest.approx(good.table()["audio→image"]["MRR"])
    assert 0 < r["randomization"]["p_value"] <= 1
    paths = write_report(good, tmp_path, other=bad, other_label="noisy", compare=cmp)
    doc = json.loads(paths["json"].read_text())
    assert doc["protocols"]["item"]["audio→image"]["n_candidates"] == 12
    assert "chance" in doc["protocols"]["item"]["audio→image"]
    md = paths["markdown"].read_text()
    assert "| audio→image | 12 | 12 |" in md and "*chance*" in md and "p (randomization)" in md
    for key in ("rank_cdf_item", "pr_curve_item", "rank_cdf_caption", "pr_curve_caption"):
        with Image.open(paths[key]) as img:
            assert img.size[0] > 300 and img.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))


def test_views_reject_bad_shapes():
    with pytest.raises(InputError):
        View("audio", "audio", np.zeros((3, 4)), ["a", "b"])
    with pytest.raises(InputError):
        evaluate_embeddings(
            [View("a", "audio", np.eye(2), ["x", "y"]), View("a", "image", np.eye(2), ["x", "y"])]
        )


# ---------------------------------------------------------------------------------------------
# End to end: `xmr eval` on a tiny checkpoint and a tiny manifest written here.


def _write_tiny_manifest(folder, n=6):
    import soundfile as sf

    (folder / "audio").mkdir()
    (folder / "image").mkdir()
    rows = []
    for i in range(n):
        t = np.arange(int(8000 * 1.6)) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t))
        sf.write(folder / "audio" / f"x{i}.wav", wave.astype(np.float32), 8000)
        img = np.full((40, 80), 255, np.uint8)
        img[5 + 3 * i : 8 + 3 * i, :] = 0  # a "staff line" at an item-dependent height
        img[:, 10 * i : 10 * i + 4] = 60
        Image.fromarray(img).save(folder / "image" / f"x{i}.png")
        full = f"a {'reel' if i % 2 else 'chorale'} in {'g' if i < 3 else 'd'} major by bach"
        content = f"a {'reel' if i % 2 else 'chorale'} in {'g' if i < 3 else 'd'} major"
        rows.append(
            {
                "id": f"x{i}",
                "split": "test" if i < 5 else "train",
                "audio": f"audio/x{i}.wav",
                "image": f"image/x{i}.png",
                "caption": [full, content],
                "caption_full": full,
                "caption_content": content,
                "key": "G" if i < 3 else "D",
                "genre": "reel" if i % 2 else "chorale",
            }
        )
    with open(folder / "manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    qrels = folder / "set.qrels"
    qrels.write_text("q1 0 audio:x1 3\nq1 0 audio:x3 1\nq1 0 audio:x0 0\nq2 0 image:x2 2\n")
    (folder / "set.queries.jsonl").write_text(
        json.dumps({"qid": "q1", "modality": "text", "text": "a lively reel"})
        + "\n"
        + json.dumps({"qid": "q2", "modality": "audio", "media": "audio/x2.wav", "source_item_id": "x2"})
        + "\n"
    )
    return folder / "manifest.jsonl", qrels


def test_xmr_eval_end_to_end(tmp_path, tiny_checkpoint, capsys):
    import torch

    torch.set_num_threads(1)
    manifest, qrels = _write_tiny_manifest(tmp_path)
    out = tmp_path / "report"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--manifest",
            str(manifest),
            "--split",
            "test",
            "--qrels",
            str(qrels),
            "--compare",
            str(tiny_checkpoint),
            "--caption-style",
            "both",
            "--ks",
            "1,5,10",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    item = doc["protocols"]["item"]
    assert doc["n_items"] == 5 and doc["caption_styles"] == ["full", "content"]
    assert {"audio→image", "image→audio", "audio→text[full]", "text[content]→image"} <= set(item)
    assert item["audio→image"]["n_candidates"] == 5 and item["audio→image"]["chance"][
        "R@1"
    ] == pytest.approx(0.2)
    assert "graded" in doc["protocols"] and doc["graded_attributes"] == ["genre", "key"]
    # Comparing a checkpoint with itself: no difference, p = 1.
    same = doc["comparison"]["item"]["audio→image"]["MRR"]
    assert same["randomization"]["p_value"] == 1.0 and same["mean_a"] == same["mean_b"]
    q = doc["qrels"]
    assert q["n_queries"] == 2 and q["n_candidates"] == {"audio": 6, "image": 6}
    assert set(q["measures"]) == {"nDCG@10", "MAP", "P@10", "R@10", "judged@10"}
    assert q["per_query"]["q1"]["judged@10"] == 3 and q["per_query"]["q2"]["judged@10"] == 1
    run_lines = (out / "run.trec").read_text().splitlines()
    assert not any(line.split()[0] == "q2" and line.split()[2] == "audio:x2" for line in run_lines)
    assert len([line for line in run_lines if line.startswith("q1 ")]) == 6  # every audio item
    md = (out / "metrics.md").read_text()
    assert "*chance*" in md and "## Human labels" in md
    for name in ("rank_cdf_item.png", "pr_curve_item.png", "rank_cdf_caption.png", "pr_curve_caption.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 300


def test_xmr_eval_bad_input_is_one_line(tmp_path, tiny_checkpoint, capsys):
    manifest, _ = _write_tiny_manifest(tmp_path)
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--manifest",
            str(manifest),
            "--split",
            "nope",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xmr: error:") and "nope" in err and "\n" not in err
