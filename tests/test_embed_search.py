"""End to end: ``xmr embed`` + ``xmr index build`` + ``xmr search`` on a small corpus build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from xmr.cli import main


@pytest.fixture(scope="module")
def embedded(tiny_checkpoint, tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "emb"
    rc = main(["embed", "--checkpoint", str(tiny_checkpoint), "--manifest", str(tiny_corpus),
               "--out", str(out), "--chunk-size", "5", "--batch-size", "16", "--no-progress"])
    assert rc == 0
    return out


def test_embed_writes_every_modality_with_ids_and_fingerprint(embedded, tiny_checkpoint, tiny_corpus):
    import xmr
    from xmr.data.manifest import read_manifest
    from xmr.index.embed import load_embeddings

    df = read_manifest(tiny_corpus)
    emb = load_embeddings(embedded)
    model = xmr.load_model(tiny_checkpoint)
    assert emb.fingerprint == model.fingerprint and emb.dim == model.embed_dim
    n = len(df)
    assert emb.vectors["audio"].shape == (n, model.embed_dim) and emb.vectors["image"].shape[0] == n
    assert emb.rows["audio"]["id"].tolist() == df["id"].tolist()
    n_caps = sum(len(c) for c in df["caption"])
    assert len(emb.vectors["text"]) == n_caps and emb.vectors["text"].dtype == np.float32
    # every caption is recorded with the item it belongs to
    first = df.iloc[0]
    rows = emb.rows["text"][emb.rows["text"]["id"] == first["id"]]
    assert rows["caption"].tolist() == list(first["caption"])
    # items longer than the audio window are cut into windows whose mean is the track vector
    win = emb.rows["audio_windows"]
    assert len(win) > n and set(win["id"]) == set(df["id"])
    sel = (win["id"] == first["id"]).to_numpy()
    mean = np.asarray(emb.vectors["audio_windows"])[sel].mean(axis=0)
    np.testing.assert_allclose(emb.vectors["audio"][0], mean / np.linalg.norm(mean), atol=1e-5)
    assert win.loc[sel, "start"].iloc[1] == pytest.approx(model.audio_window_seconds / 2)
    # the same item embedded alone gives the same vectors (same file -> same vector)
    one = model.encode("text", [first["caption"][0]])[0]
    np.testing.assert_allclose(emb.vectors["text"][rows.index[0]], one, atol=1e-5)


def test_sharded_and_resumed_embedding_equal_one_run(embedded, tiny_checkpoint, tiny_corpus, tmp_path):
    import xmr
    from xmr.index.embed import embed_manifest, load_embeddings

    model = xmr.load_model(tiny_checkpoint)
    out = tmp_path / "sharded"
    common = dict(checkpoint=tiny_checkpoint, manifest=tiny_corpus, out=out, chunk_size=5, world_size=2,
                  progress=False, model=model, modalities=["audio", "text"])
    embed_manifest(rank=1, **common)  # rank 1 embeds chunk 1 and leaves the merge to rank 0
    assert (out / "parts" / "chunk000001.done").exists() and not (out / "embeddings.json").exists()
    done_mtime = (out / "parts" / "chunk000001.npz").stat().st_mtime_ns
    embed_manifest(rank=0, **common)
    ref, got = load_embeddings(embedded), load_embeddings(out)
    assert set(got.vectors) == {"audio", "audio_windows", "text"}
    for name in got.vectors:
        np.testing.assert_allclose(got.vectors[name], ref.vectors[name], atol=1e-5)
        assert got.rows[name]["id"].tolist() == ref.rows[name]["id"].tolist()
    # resume: a lost chunk is redone, finished ones are not touched
    (out / "parts" / "chunk000000.done").unlink()
    (out / "embeddings.json").unlink()
    embed_manifest(rank=0, **{**common, "world_size": 1})
    assert (out / "parts" / "chunk000001.npz").stat().st_mtime_ns == done_mtime
    np.testing.assert_allclose(load_embeddings(out).vectors["audio"], ref.vectors["audio"], atol=1e-5)


def test_index_build_and_search_from_the_shell(embedded, tiny_checkpoint, tiny_corpus, tmp_path, capsys):
    from xmr.data.manifest import read_manifest

    index = tmp_path / "index"
    assert main(["index", "build", "--embeddings", str(embedded), "--out", str(index)]) == 0
    doc = json.loads((index / "index.json").read_text())
    assert set(doc["indexes"]) == {"audio", "audio_windows", "image", "text"}
    for info in doc["indexes"].values():
        assert info["factory"] == "Flat" and info["recall"] == 1.0 and "+" in info["recall_queries"]
    import pandas as pd

    meta = pd.read_parquet(index / "audio.parquet")
    assert {"id", "split", "caption"} <= set(meta.columns) and "audio" not in meta.columns
    capsys.readouterr()

    df = read_manifest(tiny_corpus)
    item = df.iloc[3]
    # the item's own audio file finds itself first, with a window offset
    assert main(["search", "--index", str(index), "--audio", str(item["audio"]), "--target", "audio",
                 "-k", "3", "--json"]) == 0
    printed = capsys.readouterr()
    lines = [json.loads(x) for x in printed.out.splitlines()]
    assert lines[0]["id"] == item["id"] and lines[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert lines[0]["start"] is not None and len(lines) == 3
    # what the query path did is said on stderr (the clip is longer than one window)
    assert "note: the clip was cut into" in printed.err and "windows" in printed.err
    # a fused text + image query over all modalities, filtered to one split, printed as a table
    split = str(item["split"])
    assert main(["search", "--index", str(index), "--text", item["caption"][0], "--image", str(item["image"]),
                 "--weights", "1,0.5", "-k", "4", "--filter", f"split={split}"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and len(out.strip().splitlines()) >= 2
    ids = set(df.loc[df["split"] == split, "id"])
    assert main(["search", "--index", str(index), "--text", "x", "--json", "--filter", f"split={split}",
                 "-k", "20"]) == 0
    got = [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]
    assert got and set(got) <= ids


def test_a_copied_index_records_its_copied_checkpoint(embedded, tiny_checkpoint, tiny_corpus, tmp_path,
                                                       capsys):
    from xmr.data.manifest import read_manifest
    from xmr.index.pipeline import record_checkpoint

    built = tmp_path / "run" / "index"
    assert main(["index", "build", "--embeddings", str(embedded), "--out", str(built)]) == 0
    index, ckpt = tmp_path / "assets" / "demo" / "index", tmp_path / "checkpoints" / "demo"
    shutil.copytree(built, index)
    shutil.copytree(tiny_checkpoint, ckpt)
    item = read_manifest(tiny_corpus).iloc[2]
    query = ["search", "--index", str(index), "--audio", str(item["audio"]), "--target", "audio", "--json"]
    assert main(query) != 0  # the copy still names the original checkpoint's relative place
    before = json.loads((index / "index.json").read_text())
    record_checkpoint(index, ckpt)
    after = json.loads((index / "index.json").read_text())
    assert after["checkpoint"] == "../../../checkpoints/demo"
    assert {k: v for k, v in after.items() if k != "checkpoint"} == {
        k: v for k, v in before.items() if k != "checkpoint"}
    capsys.readouterr()
    assert main(query) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["id"] == item["id"]


def test_mismatched_checkpoint_and_index_are_refused(embedded, tiny_checkpoint, tmp_path, capsys):
    index = tmp_path / "index"
    assert main(["index", "build", "--embeddings", str(embedded), "--out", str(index)]) == 0
    other = tmp_path / "other"
    shutil.copytree(index, other)
    doc = json.loads((other / "index.json").read_text())
    doc["fingerprint"] = "0123456789abcdef"
    (other / "index.json").write_text(json.dumps(doc))
    capsys.readouterr()
    rc = main(["search", "--index", str(other), "--text", "a chorale", "--checkpoint", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("xmr: error:") and len(err.strip().splitlines()) == 1
    import xmr

    assert "0123456789abcdef" in err and xmr.load_model(tiny_checkpoint).fingerprint in err
    assert main(["search", "--index", str(tmp_path / "nowhere"), "--text", "x",
                 "--checkpoint", str(tiny_checkpoint)]) == 2
