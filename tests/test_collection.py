"""``xmr collection init``: a folder of media becomes a manifest; end to end to the app's service
(collection init -> checkpoint init with tiny hub towers -> embed -> index build -> a text query)."""

from __future__ import annotations

from pathlib import Path

import hub_tiny
import numpy as np
import pytest

CAPTIONS = ["a slow organ chorale", "a fast reel on fiddle", "a gentle waltz for piano", "a lively jig"]


def _write_folder(folder: Path, n: int = 12) -> Path:
    """n tones + n drawings paired by stem, a captions CSV for most, tags or STEM.txt for the rest,
    plus files that must be skipped (an unknown type, a second audio file of one item)."""
    import soundfile as sf
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    sr = hub_tiny.SAMPLE_RATE
    t = np.arange(int(1.2 * sr)) / sr
    rows = ["id,caption,composer"]
    for k in range(n):
        stem = f"track{k:02d}"
        wave = (0.3 * np.sin(2 * np.pi * (200 + 40 * k) * t)).astype(np.float32)
        sf.write(folder / f"{stem}.wav", wave, sr)
        img = Image.new("RGB", (48, 40), (255, 255, 255))
        ImageDraw.Draw(img).rectangle([k, k, 20 + k, 30], fill=(20 * k % 255, 0, 120))
        img.save(folder / f"{stem}.png")
        if k < n - 2:
            rows.append(f"{stem},{CAPTIONS[k % len(CAPTIONS)]} number {k},composer{k % 3}")
    (folder / "captions.csv").write_text("\n".join(rows) + "\n")
    (folder / f"track{n - 2:02d}.txt").write_text("a hymn for choir\nfour voices\n")
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    sf.write(folder / "track00.flac", np.zeros(sr, np.float32) + 0.1, sr)
    return folder


def test_collection_init_pairs_by_stem_and_reports(tmp_path, capsys):
    from xmr.cli import main
    from xmr.data.manifest import read_manifest

    folder = _write_folder(tmp_path / "records")
    assert main(["collection", "init", str(folder), "--out", str(folder / "manifest.parquet")]) == 0
    out = capsys.readouterr().out
    assert "12 items (12 with audio and image" in out
    assert "paired: track00, track01" in out
    assert "notes.pdf: not audio or an image" in out and "track00.wav: a second audio file" in out
    df = read_manifest(folder / "manifest.parquet")
    assert len(df) == 12 and df["audio"].notna().all() and df["image"].notna().all()
    by_id = df.set_index("id")
    assert list(by_id.loc["track01", "caption"]) == ["a fast reel on fiddle number 1"]
    assert by_id.loc["track01", "composer"] == "composer1"
    assert list(by_id.loc["track10", "caption"]) == ["a hymn for choir", "four voices"]  # STEM.txt
    assert list(by_id.loc["track11", "caption"]) == []
    assert set(df["split"]) == {"train", "val", "test"} and (df["split"] == "train").sum() >= 8
    # seeded: the same splits again
    assert main(["collection", "init", str(folder), "--out", str(tmp_path / "again.csv")]) == 0
    again = read_manifest(tmp_path / "again.csv").set_index("id")
    assert (again.loc[by_id.index, "split"] == by_id["split"]).all()


def test_captions_from_audio_tags(tmp_path):
    import soundfile as sf
    from mutagen.flac import FLAC

    from xmr.data.collection import init_collection

    folder = tmp_path / "tagged"
    folder.mkdir()
    sf.write(folder / "song.flac", np.sin(np.arange(8000) / 10).astype(np.float32) * 0.3, 8000)
    tags = FLAC(folder / "song.flac")
    tags.update({"title": "Blue Night", "artist": "The Owls", "album": "Late", "genre": "jazz"})
    tags.save()
    report = init_collection(folder)
    from xmr.data.manifest import read_manifest

    df = read_manifest(report.manifest)
    assert list(df.loc[0, "caption"]) == ["Blue Night by The Owls, from Late (jazz)"]
    assert df.loc[0, "artist"] == "The Owls" and df.loc[0, "split"] == "train"


def test_empty_folder_is_an_error(tmp_path):
    from xmr.data.collection import init_collection
    from xmr.errors import InputError

    with pytest.raises(InputError, match="no audio or image"):
        init_collection(tmp_path)


def test_folder_to_served_text_query(tmp_path, capsys):
    from xmr.app.evaluation import Evaluation
    from xmr.app.service import RetrievalService, ServiceConfig
    from xmr.app.tabs.format import split_markdown
    from xmr.cli import main

    folder = _write_folder(tmp_path / "records")
    manifest = folder / "manifest.parquet"
    clap = hub_tiny.write_tiny_clap(tmp_path / "clap")
    clip = hub_tiny.write_tiny_clip(tmp_path / "clip")
    ckpt, emb, index = tmp_path / "ckpt", tmp_path / "emb", tmp_path / "index"
    assert main(["collection", "init", str(folder), "--out", str(manifest)]) == 0
    report = capsys.readouterr().out
    assert "paired: track00" in report and "skipped 2 files" in report
    assert main(["checkpoint", "init", "--model", "clap-clip", "--out", str(ckpt), "--set", "embed_dim=16",
                 "--set", f"audio.backbone={clap}", "--set", f"text.backbone={clap}",
                 "--set", f"image.backbone={clip}"]) == 0
    assert "shared space: audio↔text; untrained: audio↔image, image↔text" in capsys.readouterr().out
    assert main(["embed", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--out", str(emb),
                 "--no-progress"]) == 0
    assert main(["index", "build", "--embeddings", str(emb), "--out", str(index)]) == 0
    service = RetrievalService.from_config(ServiceConfig(
        checkpoint=ckpt, index=index, manifest=manifest, labels_db=tmp_path / "labels.sqlite",
        cache_dir=tmp_path / "cache"))
    hits = service.search(service.encode_query(text="a slow organ chorale"), targets=("audio", "text"), k=5)
    assert len(hits) == 5 and {h.item_id for h in hits} <= {f"track{k:02d}" for k in range(12)}
    split = Evaluation(service).test_split_report(split="train")
    assert "audio→image (untrained)" in split_markdown(split)
    assert "audio→text" in split["directions"] and "audio→text" not in split["untrained"]
