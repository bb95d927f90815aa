"""The demo corpus: a real small build (FluidSynth, Verovio, resvg), splits, captions, determinism."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures_corpus import TINY_COLLECTIONS, build_tiny_corpus
from PIL import Image

from xmr.data.corpus import media_path
from xmr.data.corpus.build import COLUMNS, build_corpus
from xmr.data.corpus.captions import MIN_NAME_CHARS, contains_name, content_caption
from xmr.data.corpus.render import IMAGE_HEIGHT, SAMPLE_RATE
from xmr.errors import InputError

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo" / "manifest.parquet"
NAME_COLUMNS = ("composer", "title", "collection_name", "collection")


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", str(text).lower()))


def _manifest_names(df: pd.DataFrame) -> set[tuple[str, ...]]:
    """Every composer, title and collection name of the manifest, as word tuples.

    Titles that are nothing but a form or tempo word ("A Jig", "Presto.") name no piece and are
    left out.
    """
    genres = {_words(g) for g in df["genre"]} | {_words(t) for t in df["tempo_term"]}
    names = set()
    for col in NAME_COLUMNS:
        for value in df[col]:
            words = _words(value) if value else ()
            if len(" ".join(words)) < MIN_NAME_CHARS:
                continue
            if (words[1:] if words[0] in ("a", "an", "the") else words) in genres:
                continue
            names.add(words)
    return names


def _names_in(text: str, names: set[tuple[str, ...]], longest: int) -> list[str]:
    words = _words(text)
    return [" ".join(words[i:j]) for i in range(len(words))
            for j in range(i + 1, min(len(words), i + longest) + 1) if words[i:j] in names]


def test_tiny_build_every_item_complete(tiny_corpus):
    """Acceptance 1: non-silent audio of the expected length, non-blank image, both captions."""
    root = tiny_corpus.parent
    df = pd.read_parquet(tiny_corpus)
    assert len(df) == 12
    assert list(df.columns) == list(COLUMNS)
    assert set(df["split"]) == {"train", "val", "test"}
    assert df["id"].is_unique
    for _, row in df.iterrows():
        assert not Path(row["audio"]).is_absolute() and row["audio"] == f"audio/{row['id']}.flac"
        wave, sr = sf.read(root / row["audio"], dtype="float32")
        assert sr == SAMPLE_RATE and wave.ndim == 1
        assert len(wave) == round(row["duration"] * SAMPLE_RATE)
        assert 8.0 <= row["duration"] <= 12.5
        assert np.sqrt(np.mean(wave**2)) > 0.02, row["id"]
        # sound in the first and in the last second of the music: the bars are really played
        assert np.abs(wave[: SAMPLE_RATE]).max() > 0.05
        end = round((row["duration"] - 0.5) * SAMPLE_RATE)
        assert np.abs(wave[end - SAMPLE_RATE: end]).max() > 0.05, row["id"]
        img = np.asarray(Image.open(root / row["image"]))
        assert img.ndim == 2 and img.shape[0] == IMAGE_HEIGHT and img.shape[1] > 100
        assert (img < 128).mean() > 0.01, row["id"]  # ink: staff lines and notes
        full, content = row["caption"]
        assert full == row["caption_full"] and content == row["caption_content"]
        assert len(full) > 40 and len(content) > 40 and full != content
        assert row["instrument"] in content and row["key"] in content
        if row["split"] == "test":
            unseen, sr = sf.read(root / row["audio_unseen"], dtype="float32")
            assert len(unseen) == len(wave) and np.sqrt(np.mean(unseen**2)) > 0.02
            assert not np.allclose(unseen, wave, atol=1e-3)  # another soundfont: another timbre
        else:
            assert pd.isna(row["audio_unseen"])


def test_splits_disjoint_by_piece(tiny_corpus):
    frames = [pd.read_parquet(tiny_corpus)]
    if DEMO.is_file():
        frames.append(pd.read_parquet(DEMO))
    for df in frames:
        per_piece = df.groupby("piece_id")["split"].nunique()
        assert (per_piece == 1).all(), per_piece[per_piece > 1].index.tolist()[:5]


def test_full_plan_is_80_10_10_by_piece_and_balanced():
    from xmr.data.corpus.catalog import COLLECTIONS, plan_pieces

    plan = plan_pieces(seed=0)
    pieces = pd.DataFrame({"piece": [p.piece_id for p, _ in plan], "split": [s for _, s in plan],
                           "collection": [p.collection for p, _ in plan]})
    assert pieces["piece"].is_unique
    share = pieces["split"].value_counts(normalize=True)
    assert abs(share["test"] - 0.1) < 0.01 and abs(share["val"] - 0.1) < 0.01
    for coll in COLLECTIONS:  # every collection is capped, and in every split when big enough
        sub = pieces[pieces["collection"] == coll.key]
        assert len(sub) <= coll.max_pieces
        if len(sub) >= 10:
            assert set(sub["split"]) == {"train", "val", "test"}
    other = {p.piece_id: s for p, s in plan_pieces(seed=1)}
    assert other != dict(zip(pieces["piece"], pieces["split"], strict=True))  # the seed picks splits


def test_content_captions_never_name_composer_title_or_collection(tiny_corpus):
    frames = [pd.read_parquet(tiny_corpus)]
    if DEMO.is_file():
        frames.append(pd.read_parquet(DEMO))
    for df in frames:
        for _, row in df.iterrows():  # the item's own names, in any case
            for col in NAME_COLUMNS:
                assert not contains_name(row["caption_content"], row[col]), (row["id"], row[col])
    for df in frames:  # every name of the manifest against every caption (whole words)
        names = _manifest_names(df)
        longest = max(len(n) for n in names)
        hits = [(c, found) for c in df["caption_content"] if (found := _names_in(c, names, longest))]
        assert not hits, hits[:3]
    tiny = frames[0]
    # the full caption does name them (so the two styles really differ)
    assert any(row["collection_name"] in row["caption_full"] for _, row in tiny.iterrows())


def test_content_caption_drops_a_clause_that_holds_a_name():
    meta = {"genre": "reel", "key": "D major", "meter": "4/4", "meter_kind": "simple quadruple",
            "tempo_term": "allegro", "beat_bpm": 112, "instrument": "fiddle", "voices": 1, "register": "high"}
    assert "reel" in content_caption(meta, ["The Boys of Ballisodare"])
    text = content_caption(meta, ["Reel"])
    assert "reel" not in text.lower() and "D major" in text and "fiddle" in text
    assert not contains_name("a reeling tune", "reel")  # whole words only


def test_rebuild_gives_identical_manifest_and_media_and_resumes(tiny_corpus, tmp_path):
    """Acceptance 3: same seed -> identical manifest and byte-identical media; resume renders nothing."""
    first = pd.read_parquet(tiny_corpus)
    again = build_tiny_corpus(tmp_path / "again")
    pd.testing.assert_frame_equal(first, pd.read_parquet(again))
    for _, row in first.iterrows():
        for col in ("audio", "image", "audio_unseen"):
            if not pd.isna(row[col]):
                assert (tiny_corpus.parent / row[col]).read_bytes() == (again.parent / row[col]).read_bytes()
    views = pd.read_parquet(tiny_corpus.parent / "views.parquet")
    pd.testing.assert_frame_equal(views, pd.read_parquet(again.parent / "views.parquet"))
    for rel in views["path"]:  # the views too: same draws, byte-identical files
        assert (tiny_corpus.parent / rel).read_bytes() == (again.parent / rel).read_bytes(), rel
    # resume: everything is found on disk, nothing is rendered again, same manifest
    summary = build_corpus(out=again.parent, limit=12, workers=1, collections=TINY_COLLECTIONS,
                           progress=False)
    assert summary.rendered_files == 0 and summary.reused_files > 0
    pd.testing.assert_frame_equal(first, pd.read_parquet(again))
    pd.testing.assert_frame_equal(views, pd.read_parquet(again.parent / "views.parquet"))
    # the manifest of finished pieces only (no rendering) is the same manifest
    (again.parent / "manifest.parquet").unlink()
    summary = build_corpus(out=again.parent, limit=12, collections=TINY_COLLECTIONS, progress=False,
                           finished_only=True)
    assert summary.rendered_files == 0 and summary.pieces_pending == 0
    pd.testing.assert_frame_equal(first, pd.read_parquet(again))
    with pytest.raises(InputError):  # nothing finished in an empty folder
        build_corpus(out=tmp_path / "empty", limit=12, collections=TINY_COLLECTIONS, progress=False,
                     finished_only=True)
    # a deleted file is rendered again, identical
    victim = again.parent / first.iloc[0]["image"]
    victim.unlink()
    summary = build_corpus(out=again.parent, limit=12, workers=1, collections=TINY_COLLECTIONS,
                           progress=False)
    assert summary.rendered_files == 1
    assert victim.read_bytes() == (tiny_corpus.parent / first.iloc[0]["image"]).read_bytes()


def test_parallel_build_equals_serial_build(tiny_corpus, tmp_path):
    out = tmp_path / "par"
    build_corpus(out=out, limit=12, workers=2, collections=TINY_COLLECTIONS, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tiny_corpus), pd.read_parquet(out / "manifest.parquet"))


def test_media_path_returns_built_file_or_renders_identical_one(tiny_corpus, tmp_path):
    df = pd.read_parquet(tiny_corpus)
    test_row = df[df["split"] == "test"].iloc[0]
    train_row = df[df["split"] == "train"].iloc[0]
    # present next to the manifest: that file, nothing rendered
    assert media_path(test_row, "image", manifest_dir=tiny_corpus.parent, cache_dir=tmp_path) == (
        tiny_corpus.parent / test_row["image"])
    assert not any(tmp_path.iterdir())
    # absent (the bundled manifest ships no media): rendered into the cache, same bytes as the build
    for modality in ("audio", "image", "audio_unseen"):
        got = media_path(test_row, modality, cache_dir=tmp_path)
        assert got.is_relative_to(tmp_path)
        assert got.read_bytes() == (tiny_corpus.parent / test_row[modality]).read_bytes()
        assert media_path(test_row, modality, cache_dir=tmp_path) == got  # cached
    with pytest.raises(InputError):
        media_path(train_row, "audio_unseen", cache_dir=tmp_path)
    with pytest.raises(InputError):
        media_path(train_row, "video", cache_dir=tmp_path)
    # a row of another collection (no corpus columns) whose file is missing: a clear error
    from xmr.errors import MissingAssetError

    with pytest.raises(MissingAssetError, match="no audio file"):
        media_path({"id": "x", "audio": "audio/x.flac"}, "audio", manifest_dir=tmp_path, cache_dir=tmp_path)


def test_media_path_accepts_rows_of_read_manifest(tiny_corpus, tmp_path):
    from xmr.data.manifest import read_manifest

    df = read_manifest(tiny_corpus)
    row = df[df["split"] == "test"].iloc[0]
    assert media_path(row, "audio", cache_dir=tmp_path) == Path(row["audio"])
    assert media_path(row, "audio_unseen", cache_dir=tmp_path) == tiny_corpus.parent / row["audio_unseen"]
    assert not tmp_path.joinpath("corpus").exists()  # nothing rendered


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    from xmr.cli import main

    assert main(["corpus", "build", "--out", str(tmp_path), "--limit", "0"]) == 2
    assert main(["corpus", "build", "--out", str(tmp_path), "--collections", "nope"]) == 2
    assert main(["corpus", "build", "--out", str(tmp_path), "--soundfont", "missing.sf2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("xmr: error: ") for line in err)
    assert "nope" in err[1] and "missing.sf2" in err[2]


def test_cli_build_writes_manifest(tmp_path, capsys):
    from xmr.cli import main

    out = tmp_path / "c"
    assert main(["corpus", "build", "--out", str(out), "--limit", "2", "--workers", "1",
                 "--collections", "bach", "--no-progress"]) == 0
    assert len(pd.read_parquet(out / "manifest.parquet")) == 2
    assert "2 items" in capsys.readouterr().out


def test_windows_last_8_to_12_seconds_and_do_not_overlap():
    from xmr.data.corpus.catalog import COLLECTIONS_BY_KEY, Piece
    from xmr.data.corpus.excerpts import choose_windows

    piece = Piece("bach/test", "bach", "bach/test.mxl")
    table = [(i, 3.0 if i % 7 else 1.0) for i in range(60)]
    windows = choose_windows(piece, COLLECTIONS_BY_KEY["bach"], table, 100)
    assert len(windows) > 5
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.end < b.start
    for w in windows:
        assert 8.0 <= w.music_seconds <= 12.0
        assert w.quarter_length == sum(q for i, q in table if w.start <= i <= w.end)
    capped = choose_windows(piece, COLLECTIONS_BY_KEY["bach"], table, 3)
    assert len(capped) == 3 and capped[0] == windows[0] and capped[-1] == windows[-1]
    assert choose_windows(piece, COLLECTIONS_BY_KEY["bach"], table, 3) == capped


def test_catalog_skips_duplicate_and_test_files():
    from xmr.data.corpus.catalog import COLLECTIONS_BY_KEY, list_pieces

    oneills = list_pieces(COLLECTIONS_BY_KEY["oneills"])
    numbers = [p.number for p in oneills]
    assert len(numbers) == len(set(numbers))  # one transcription of each tune number
    essen = list_pieces(COLLECTIONS_BY_KEY["essen"])
    assert not any("/test" in p.source or "variant" in p.source for p in essen)
    assert len({p.piece_id for p in essen}) == len(essen)


def test_copied_corpus_still_resolves_relative_media(tiny_corpus, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(tiny_corpus.parent, dst)
    row = pd.read_parquet(dst / "manifest.parquet").iloc[0]
    assert media_path(row, "image", manifest_dir=dst, cache_dir=tmp_path / "cache") == dst / row["image"]


# ----------------------------------------------------------------------------- bar alignment


def _corpus_excerpt(row):
    from xmr.data.corpus.excerpts import load_piece, make_excerpt

    tune = int(row["tune"])
    score = load_piece(str(row["source"]), tune if tune >= 0 else None)
    return make_excerpt(score, int(row["measure_start"]), int(row["measure_end"]))


def _only_noteheads_of_bar(svg: str, k: int) -> str:
    """The SVG with everything hidden except the note heads of its bar ``k`` (its measure groups)."""
    import xml.etree.ElementTree as ET

    from xmr.data.corpus.render import svg_bars

    ns = "{http://www.w3.org/2000/svg}"
    ET.register_namespace("", ns[1:-1])
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    root = ET.fromstring(svg)
    root.set("visibility", "hidden")
    measures = [g for g in root.iter(f"{ns}g") if "measure" in (g.get("class") or "").split()]
    for m in svg_bars(svg)[k]["measures"]:
        for g in measures[m].iter(f"{ns}g"):
            if "notehead" in (g.get("class") or "").split():
                g.set("visibility", "visible")
    return ET.tostring(root, encoding="unicode")


def _heads_in_bar_boxes(svg: str, place, boxes: dict, ident: str) -> int:
    """Assert that bar k's note heads, rasterised alone, lie in bar k's x-range and in (or near:
    ledger lines) its rows, nearer to its own system's rows than to another's; returns the number
    of bars with note heads."""
    import io

    import resvg_py

    x0, x1, y0, y1 = (np.asarray(boxes[k]) for k in ("bar_x0", "bar_x1", "bar_y0", "bar_y1"))
    seen = 0
    for k in range(len(x0)):
        raw = resvg_py.svg_to_bytes(svg_string=_only_noteheads_of_bar(svg, k), background="#ffffff")
        ink = np.asarray(Image.open(io.BytesIO(bytes(raw))).convert("L")) < 160
        if not ink.any():
            continue  # a bar of rests
        cols, rows = np.flatnonzero(ink.any(axis=0)), np.flatnonzero(ink.any(axis=1))
        left, right = place.x(cols[0]), place.x(cols[-1] + 1)
        top, bottom = place.y(rows[0]), place.y(rows[-1])
        assert x0[k] <= math.floor(left) and math.ceil(right) <= x1[k], (ident, k, left, right)
        assert y0[k] - 30 <= top and bottom <= y1[k] + 30, (ident, k, top, bottom)  # ledger lines
        middle = (top + bottom) / 2
        gaps = [max(b0 - middle, middle - b1, 0) for b0, b1 in zip(y0, y1, strict=True)]
        assert gaps[k] == min(gaps), (ident, k, middle)  # its own system, not the other one
        seen += 1
    return seen


def test_every_notehead_of_a_bar_lies_in_its_x_range(tiny_corpus):
    """Rendered through resvg, the ink of bar k's note heads falls inside [bar_x0[k], bar_x1[k])."""
    from xmr.data.corpus import render

    df = pd.read_parquet(tiny_corpus)
    heads_seen = 0
    for _, row in df.iterrows():
        n = int(row["n_measures"])
        x0, x1 = np.asarray(row["bar_x0"]), np.asarray(row["bar_x1"])
        y0, y1 = np.asarray(row["bar_y0"]), np.asarray(row["bar_y1"])
        assert len(x0) == len(x1) == len(y0) == len(y1) == n >= 2
        png = np.asarray(Image.open(tiny_corpus.parent / row["image"]))
        assert x0[0] >= 0 and x1[-1] <= png.shape[1] and (x1 > x0).all()
        assert (x0[1:] == x1[:-1]).all()  # neighbouring bars meet at their barline
        assert len(set(y0)) == len(set(y1)) == 1  # one system: every bar on the same staves
        svg = render.engrave(_corpus_excerpt(row))
        img, place = render.rasterize_placed(svg)
        assert (np.asarray(img) == png).all()  # the same engraving as the built PNG
        assert len(render.svg_bars(svg)) == n
        heads_seen += _heads_in_bar_boxes(svg, place, row, row["id"])
    assert heads_seen >= 3 * len(df)


def _midi_note_on_seconds(path: Path) -> tuple[list[float], float]:
    """Note-on times (s) of a single-tempo MIDI file, and its tempo in quarter notes per minute."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    tpq = mf.ticksPerQuarterNote
    times, tempos = [], []
    for track in mf.tracks:
        tick = 0
        for event in track.events:
            if isinstance(event, midi.DeltaTime):
                tick += event.time
            elif event.type == midi.MetaEvents.SET_TEMPO:
                tempos.append(60e6 / midi.getNumber(event.data, 3)[0])
            elif event.type == midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0:
                times.append(tick / tpq)
    assert len({round(t) for t in tempos}) == 1, tempos
    return [t * 60.0 / tempos[0] for t in times], tempos[0]


def test_bar_onsets_equal_the_midi_bar_times(tiny_corpus, tmp_path):
    """Bar onsets + each note's offset in its bar give exactly the MIDI's note-on times."""
    from music21 import stream

    from xmr.data.corpus.excerpts import TAIL_SECONDS, set_performance
    from xmr.data.corpus.render import write_midi

    df = pd.read_parquet(tiny_corpus)
    for _, row in df.iterrows():
        onsets, ends = np.asarray(row["bar_onsets"]), np.asarray(row["bar_ends"])
        assert len(onsets) == len(ends) == row["n_measures"]
        assert onsets[0] == 0.0 and (ends[:-1] == onsets[1:]).all() and (ends > onsets).all()
        assert abs(ends[-1] - (row["duration"] - TAIL_SECONDS)) < 2e-3  # the bars fill the audio
        perf = set_performance(_corpus_excerpt(row), bpm=int(row["tempo_bpm"]), program=int(row["program"]))
        mid = tmp_path / f"{row['id']}.mid"
        write_midi(perf, mid)
        got, bpm = _midi_note_on_seconds(mid)
        assert round(bpm) == row["tempo_bpm"]
        sec = 60.0 / row["tempo_bpm"]
        expected = set()
        for part in perf.parts:
            for k, m in enumerate(part.getElementsByClass(stream.Measure)):
                for n in m.recurse().notes:
                    if n.tie is not None and n.tie.type in ("stop", "continue"):
                        continue  # a tied continuation sounds no new note
                    expected.add(round(onsets[k] + float(n.getOffsetInHierarchy(m)) * sec, 3))
        assert {round(t, 3) for t in got} == expected, row["id"]
        # and each bar that begins with a note has a MIDI note-on exactly at its onset
        assert sum(round(o, 3) in expected for o in onsets) >= len(onsets) - 1


def test_old_manifest_without_bar_columns_still_loads(tmp_path):
    from xmr.data.manifest import bar_alignment, read_manifest

    if DEMO.is_file():  # the bundled build has the alignment; the same rows without it still load
        demo = read_manifest(DEMO)
        assert len(bar_alignment(demo.iloc[0])["bar_onsets"]) == demo.iloc[0]["n_measures"]
        path = tmp_path / "old.parquet"
        demo.drop(columns=[c for c in demo.columns if c.startswith("bar_")]).to_parquet(path)
        old = read_manifest(path)
        assert "bar_onsets" not in old.columns and len(old) == len(demo) > 1000
        assert bar_alignment(old.iloc[0]) is None
    row = {"id": "a", "bar_onsets": "[0.0, 1.5]", "bar_ends": [1.5, 3.0], "bar_x0": np.array([5, 80]),
           "bar_x1": [80, 150]}
    bars = bar_alignment(row)
    assert bars["bar_onsets"].tolist() == [0.0, 1.5] and bars["bar_x1"].dtype == np.int64
    assert "bar_y0" not in bars
    from xmr.errors import ManifestError

    with pytest.raises(ManifestError):
        bar_alignment({**row, "bar_x1": [80]})
    with pytest.raises(ManifestError):
        bar_alignment({**row, "bar_x1": [4, 150]})


def test_overflow_of_an_overfull_bar_belongs_to_that_bar():
    """Verovio draws the excess notes of an overfull bar as an extra measure on that staff only;
    it is part of the bar (Haydn op. 1 no. 1/v, bar 16 of the first violin holds 2.96 beats of 2/4)."""
    from music21 import stream

    from xmr.data.corpus import render
    from xmr.data.corpus.excerpts import load_piece, make_excerpt

    excerpt = make_excerpt(load_piece("haydn/opus1no1/movement5.mxl"), 9, 15)
    assert len(excerpt.parts[0].getElementsByClass(stream.Measure)) == 7
    svg = render.engrave(excerpt)
    assert svg.count('class="measure"') == 8
    bars = render.svg_bars(svg)
    assert [len(b["measures"]) for b in bars] == [1] * 6 + [2]
    img, layout = render.engrave_image(excerpt)
    assert len(layout["bar_x0"]) == 7 and layout["bar_x1"][-1] > layout["bar_x0"][-1] + 50
    assert layout["bar_x1"][-1] >= img.width - 20  # the last bar reaches the end of the staff


# ----------------------------------------------------------------------------- views


def _views(tiny_corpus):
    from xmr.data.manifest import read_views

    return read_manifest_frame(tiny_corpus), read_views(tiny_corpus)


def read_manifest_frame(path):
    from xmr.data.manifest import read_manifest

    return read_manifest(path).set_index("id", drop=False)


def test_views_of_train_and_test_items(tiny_corpus):
    """Train items: audio_sf + image_layout; test items: image_other (+ audio_unseen); val: none.
    Draws come from the item id, never the unseen soundfont or the held-out font in training."""
    from xmr.data.corpus import views as V
    from xmr.data.corpus.render import DEFAULT_SOUNDFONT, UNSEEN_SOUNDFONT, Layout

    df, views = _views(tiny_corpus)
    assert list(views.columns) == list(V.VIEW_COLUMNS) and len(views) > 0
    per_item = views.groupby("id")["view"].apply(lambda s: tuple(sorted(s))).to_dict()
    for ident, row in df.iterrows():
        expected = {"train": ("audio_sf", "image_layout"), "val": (), "test": ("audio_unseen", "image_other")}
        assert per_item.get(ident, ()) == expected[row["split"]], ident
    for _, v in views.iterrows():
        assert Path(v["path"]).is_file() and Path(v["path"]).is_absolute()
        assert v["path"].endswith(f"{v['view']}/{v['id']}.{'png' if v['modality'] == 'image' else 'flac'}")
        title = df.loc[v["id"], "title"]  # the piece's title, as the build drew it
        if v["view"] == "audio_sf":
            assert v["soundfont"] == V.draw_soundfont(v["id"]) in V.TRAIN_SOUNDFONTS
            assert v["soundfont"] not in (UNSEEN_SOUNDFONT, DEFAULT_SOUNDFONT)
        elif v["view"] == "image_layout":
            layout = V.draw_layout(v["id"], title)
            assert layout != Layout() and v["font"] == layout.font != V.HELD_OUT_FONT
            assert (v["spacing_linear"], v["spacing_non_linear"], v["scale"]) == (
                layout.spacing_linear, layout.spacing_non_linear, layout.scale)
            assert (None if pd.isna(v["title"]) else v["title"]) == layout.title
            assert v["systems"] == layout.systems or layout.systems == 2  # an unbreakable excerpt keeps 1
        elif v["view"] == "image_other":
            assert v["font"] == V.HELD_OUT_FONT and v["systems"] == 2 and v["title"] == title
    images = views[views["modality"] == "image"]
    assert (images["systems"] == 2).any() and (images["systems"] == 1).any()
    assert images["title"].notna().any()
    # determinism and coverage of the draws over many ids; the held-out choices never drawn
    ids = [f"x-{i}" for i in range(400)]
    assert [V.draw_soundfont(i) for i in ids] == [V.draw_soundfont(i) for i in ids]
    assert {V.draw_soundfont(i) for i in ids} == set(V.TRAIN_SOUNDFONTS)
    layouts = [V.draw_layout(i, "T") for i in ids]
    assert layouts == [V.draw_layout(i, "T") for i in ids]
    assert {lay.font for lay in layouts} == set(V.TRAIN_FONTS)
    assert {lay.systems for lay in layouts} == {1, 2} and {lay.title for lay in layouts} == {None, "T"}
    assert not ({UNSEEN_SOUNDFONT, DEFAULT_SOUNDFONT} & set(V.TRAIN_SOUNDFONTS))


def _onset_strength(wave: np.ndarray) -> np.ndarray:
    frame = SAMPLE_RATE // 50
    n = len(wave) // frame * frame
    level = np.log(np.sqrt((wave[:n].reshape(-1, frame) ** 2).mean(axis=1)) + 1e-4)
    return np.maximum(np.diff(level), 0)


def _log_spectrum(wave: np.ndarray) -> np.ndarray:
    n = len(wave) // 1024 * 1024
    spec = np.abs(np.fft.rfft(wave[:n].reshape(-1, 1024) * np.hanning(1024), axis=1))
    return np.log(spec.mean(axis=0) + 1e-6)


def test_soundfont_view_has_another_timbre_and_the_same_bars(tiny_corpus):
    from xmr.data.manifest import bar_alignment, draw_view, group_views, view_alignment

    df, views = _views(tiny_corpus)
    audio = views[views["view"] == "audio_sf"]
    assert len(audio) == int((df["split"] == "train").sum())
    distances, aligned = [], 0
    for _, v in audio.iterrows():
        row = df.loc[v["id"]]
        main, sr = sf.read(row["audio"], dtype="float32")
        other, sr2 = sf.read(v["path"], dtype="float32")
        assert sr == sr2 == SAMPLE_RATE and len(other) == len(main)
        assert np.sqrt(np.mean(other**2)) > 0.02 and not np.allclose(other, main, atol=1e-3)
        distances.append(float(np.abs(_log_spectrum(main) - _log_spectrum(other)).mean()))
        # the same MIDI: the music starts together, and the note onsets line up at lag 0
        start = [np.flatnonzero(np.abs(w) > 0.02)[0] / SAMPLE_RATE for w in (main, other)]
        assert abs(start[0] - start[1]) < 0.03, (v["id"], start)
        a, b = _onset_strength(main), _onset_strength(other)
        lags = list(range(-10, 11))
        aligned += lags[int(np.argmax([np.dot(np.roll(a, lag), b) for lag in lags]))] == 0
        bars = view_alignment(row, v.to_dict())
        np.testing.assert_array_equal(bars["bar_onsets"], bar_alignment(row)["bar_onsets"])
    assert min(distances) > 0.1 and np.mean(distances) > 0.4, distances  # another timbre
    assert aligned >= 0.75 * len(audio)
    # draw_view: u picks among the main file and the item's views of that modality
    grouped = group_views(views)
    row = df.loc[audio.iloc[0]["id"]]
    assert draw_view(row, grouped, "audio", 0.0)["view"] == "main"
    assert draw_view(row, grouped, "audio", 0.0)["path"] == row["audio"]
    pick = draw_view(row, grouped, "image", 0.99)
    assert pick["view"] == "image_layout" and Path(pick["path"]).is_file()
    layout_view = views[(views["id"] == row["id"]) & (views["view"] == "image_layout")].iloc[0]
    assert pick["bars"]["bar_x0"].tolist() == list(layout_view["bar_x0"])
    test_row = df[df["split"] == "test"].iloc[0]
    assert draw_view(test_row, grouped, "image", 0.99)["view"] == "main"  # test views are not for training


def test_view_images_note_heads_lie_in_their_bar_boxes(tiny_corpus):
    """Each image view equals its re-engraving, and bar k's note heads lie in its x/y box
    (two systems included)."""
    from xmr.data.corpus import render

    df, views = _views(tiny_corpus)
    images = views[views["modality"] == "image"]
    heads = 0
    for _, v in images.iterrows():
        row = df.loc[v["id"]]
        n = int(row["n_measures"])
        boxes = {k: np.asarray(v[k]) for k in ("bar_x0", "bar_x1", "bar_y0", "bar_y1")}
        assert all(len(b) == n for b in boxes.values())
        png = np.asarray(Image.open(v["path"]))
        assert png.ndim == 2 and png.shape[0] in range(IMAGE_HEIGHT, 2 * IMAGE_HEIGHT + 1)
        assert (boxes["bar_x1"] > boxes["bar_x0"]).all() and boxes["bar_x1"].max() <= png.shape[1]
        assert (boxes["bar_y1"] > boxes["bar_y0"]).all() and boxes["bar_y1"].max() <= png.shape[0]
        assert len(set(boxes["bar_y0"].tolist())) == v["systems"]  # one row band per system
        layout = render.Layout(font=v["font"], spacing_linear=v["spacing_linear"],
                               spacing_non_linear=v["spacing_non_linear"], scale=int(v["scale"]),
                               title=None if pd.isna(v["title"]) else v["title"], systems=int(v["systems"]))
        img, bars, svg, place, systems = render.engrave_view(_corpus_excerpt(row), layout)
        assert systems == v["systems"] and (np.asarray(img) == png).all()
        assert {k: list(b) for k, b in bars.items()} == {k: b.tolist() for k, b in boxes.items()}
        heads += _heads_in_bar_boxes(svg, place, boxes, v["id"])
    assert heads >= 2 * len(images)
