"""Where a result matches, in bars (xmr.index.bars): spans, a synthetic score read by a reader that
can tell its bars apart, and the real service and ``xmr search`` on a real corpus build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xmr.index.bars import BarLocator, BarMatch, BarQuery, bars_in, candidate_spans, draw_bars

SR = 8000
BAR_S = 2.0
N_BARS = 8
BAR_PX = 60
FREQS = [300.0 + 150.0 * k for k in range(N_BARS)]   # bar k sounds one tone...
GRAYS = [20 + 25 * k for k in range(N_BARS)]          # ...and is drawn in one grey


class BarReader:
    """A reader of the synthetic score: its vector says how much of each bar an input holds (the
    energy at each bar's tone for audio, the area in each bar's grey for images), so the cosine of
    a clip and a span is high exactly when they hold the same bars."""

    sample_rate = SR
    modalities = ("audio", "image")

    def encode(self, modality, items, batch_size=32):
        out = []
        for x in items:
            if modality == "audio":
                spec = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
                freqs = np.fft.rfftfreq(len(x), 1 / SR)
                v = np.array([spec[np.abs(freqs - f) < 20].sum() for f in FREQS])
            else:
                a = np.asarray(x.convert("L"), np.int64)
                v = np.array([(a == g).sum() for g in GRAYS], np.float64)
            out.append(v / max(np.linalg.norm(v), 1e-12))
        return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A score of 8 two-second bars (tone k / grey k), its bar alignment, its files."""
    import soundfile as sf
    from PIL import Image

    folder = tmp_path_factory.mktemp("synthetic_bars")
    t = np.arange(int(BAR_S * SR)) / SR
    wave = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in FREQS]).astype(np.float32)
    sf.write(folder / "a.wav", wave, SR)
    img = np.full((50, N_BARS * BAR_PX + 10), 255, np.uint8)
    for k, g in enumerate(GRAYS):
        img[10:40, 5 + k * BAR_PX:5 + (k + 1) * BAR_PX] = g
    Image.fromarray(img).save(folder / "s.png")
    ks = range(N_BARS)
    row = {"id": "synthetic-b000", "audio": str(folder / "a.wav"), "image": str(folder / "s.png"),
           "bar_onsets": [k * BAR_S for k in ks], "bar_ends": [(k + 1) * BAR_S for k in ks],
           "bar_x0": [5 + k * BAR_PX for k in ks], "bar_x1": [5 + (k + 1) * BAR_PX for k in ks],
           "bar_y0": [10] * N_BARS, "bar_y1": [40] * N_BARS}
    return row, wave


def test_candidate_spans_follow_the_query_length():
    on, end = [0, 2, 4, 6, 8], [2, 4, 6, 8, 10]
    assert candidate_spans(on, end, 4.0) == [(0, 2), (1, 3), (2, 4)]
    assert candidate_spans(on, end, 4.0, extra_bars=0) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert candidate_spans(on, end, 30.0) == [(0, 4)]  # longer than the item: all of it
    assert candidate_spans(on, end, None) == [(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4),
                                              (0, 3), (1, 4)]
    assert candidate_spans([0.0], [3.0], None) == [(0, 0)]


def test_bars_in_counts_a_bar_the_clip_holds_a_quarter_second_of():
    on, end = [0, 2, 4, 6], [2, 4, 6, 8]
    assert bars_in(on, end, 1.5, 5.5) == (0, 2)
    assert bars_in(on, end, 1.9, 5.9) == (1, 2)     # 0.1 s of bar 0 does not count
    assert bars_in(on, end, 8.5, 9.0) is None


@pytest.mark.parametrize("via", ["image", "audio"])
def test_synthetic_clips_highlight_their_own_bars(synthetic, via):
    """4 s clips at 60 seeded offsets: the highlighted bars contain every bar the clip holds."""
    row, wave = synthetic
    reader = BarReader()
    locator = BarLocator(reader, via=via)
    rng = np.random.default_rng(0)
    contained = 0
    for t0 in rng.uniform(0, N_BARS * BAR_S - 4.0, size=60):
        clip = wave[int(t0 * SR):int((t0 + 4.0) * SR)]
        match = locator.locate(BarQuery(reader.encode("audio", [clip]), 4.0), row, row[via])
        first, last = bars_in(row["bar_onsets"], row["bar_ends"], t0, t0 + 4.0)
        contained += match.contains(first, last)
        assert match.last - match.first + 1 == 3  # the clip's two bars and one more
        assert match.boxes == [(row["bar_x0"][b], 10, row["bar_x1"][b], 40)
                               for b in range(match.first, match.last + 1)]
        assert match.onset == row["bar_onsets"][match.first] and match.end == row["bar_ends"][match.last]
    assert contained / 60 >= 0.95
    assert len(locator._cache) == 1 and len(locator._cache["synthetic-b000"]) == N_BARS - 2


def test_a_wrong_clip_is_not_highlighted_where_it_does_not_sound(synthetic):
    """A clip of bars 5-6 played alone matches bars around 5-6, not the start of the score."""
    row, wave = synthetic
    reader = BarReader()
    clip = wave[int(10.0 * SR):int(14.0 * SR)]
    locator = BarLocator(reader)  # the default: via the item's audio, as the app matches
    assert locator.via == "audio"
    match = locator.locate(BarQuery(reader.encode("audio", [clip]), 4.0), row, row[locator.via])
    assert match.contains(5, 6) and match.first >= 4
    assert match.label == f"bars {match.first + 1}–{match.last + 1}"
    assert BarMatch.from_dict(json.loads(json.dumps(match.to_dict()))) == match


def test_draw_bars_fills_the_boxes_and_keeps_the_ink(synthetic, tmp_path):
    from PIL import Image

    row, _ = synthetic
    out = draw_bars(row["image"], [(65, 10, 125, 40)], tmp_path / "h.png")
    src = np.asarray(Image.open(row["image"]).convert("RGB")).astype(int)
    got = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert got.shape == src.shape
    assert (got[45, 300] == src[45, 300]).all()              # outside the box: unchanged
    inside = got[44, 90]                                      # white margin inside the padded box: tinted
    assert inside[0] > inside[2] + 40 and (src[44, 90] == 255).all()
    assert (got[20, 90] <= src[20, 90]).all()                 # the bar's own grey never gets lighter


# ---------------------------------------------------------------- a real corpus build


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, tiny_checkpoint, tiny_corpus):
    from browser.tiny_demo import make_demo

    return make_demo(tmp_path_factory.mktemp("bars_demo"), tiny_checkpoint, tiny_corpus)


def test_service_locates_bars_of_a_real_build_for_an_audio_query(tiny_index, tmp_path):
    from PIL import Image

    from xmr.app.service import RetrievalService, ServiceConfig
    from xmr.data.manifest import bar_alignment

    env = tiny_index
    config = ServiceConfig(checkpoint=Path(env["XMR_CHECKPOINT"]), index=Path(env["XMR_INDEX"]),
                           manifest=Path(env["XMR_MANIFEST"]), labels_db=tmp_path / "l.sqlite",
                           cache_dir=tmp_path / "cache")
    service = RetrievalService.from_config(config)
    item = service.examples("audio", 1)[0]
    bars = bar_alignment(service.row(item))
    assert bars is not None, "the corpus build has a bar alignment"
    wave_path = service.media(item, "audio")
    query = service.encode_query(audio=str(wave_path))
    hits = service.search(query, targets=("audio", "image"), k=5, bars=True)
    assert all(h.bars is not None for h in hits)
    for h in hits:
        own = bar_alignment(service.row(h.item_id))
        m = h.bars
        assert 0 <= m.first <= m.last < len(own["bar_onsets"]) == m.n_bars
        assert [b[0] for b in m.boxes] == list(own["bar_x0"][m.first:m.last + 1])
        d = service.hit_dict(h)["bars"]
        assert d["label"] == m.label and d["boxes"] == [list(b) for b in m.boxes]
        png = service.highlighted_image(h.item_id, d)
        with Image.open(png) as im, Image.open(service.media(h.item_id, "image")) as src:
            assert im.size == src.size
    # a text query has no bars; a query of the item's own audio again costs no new span embedding
    assert service.locate_bars(service.encode_query(text="a slow chorale"), [hits[0].item_id]) == {}
    cached = {i: dict(v) for i, v in service.bars._cache.items()}
    again = service.locate_bars(query, [h.item_id for h in hits])
    assert {i: m.first for i, m in again.items()} == {h.item_id: h.bars.first for h in hits}
    assert {i: len(v) for i, v in service.bars._cache.items()} == {i: len(v) for i, v in cached.items()}


def test_xmr_search_prints_the_bar_range(tiny_index):
    from xmr.data.manifest import read_manifest

    env = tiny_index
    df = read_manifest(env["XMR_MANIFEST"])
    audio = df[df["split"] == "test"].sort_values("id")["audio"].iloc[0]
    base = [sys.executable, "-m", "xmr", "search", "--index", env["XMR_INDEX"], "--checkpoint",
            env["XMR_CHECKPOINT"], "--audio", str(audio), "--target", "image", "-k", "3"]
    table = subprocess.run(base + ["--manifest", env["XMR_MANIFEST"]], capture_output=True, text=True,
                           check=True).stdout
    lines = table.strip().splitlines()
    assert "bars" in lines[0] and len(lines) == 4
    for line in lines[1:]:
        assert " bars " in line or " bar " in line, line
    out = subprocess.run(base + ["--manifest", env["XMR_MANIFEST"], "--json"], capture_output=True, text=True,
                         check=True).stdout
    rows = [json.loads(x) for x in out.splitlines()]
    for r in rows:
        assert r["bars"]["label"] in table and r["bars"]["first"] <= r["bars"]["last"]
    plain = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    assert "bars" not in plain.splitlines()[0]
