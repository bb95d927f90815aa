"""Training views: rows of a real demo-corpus build draw between the main files and their views
(another soundfont, another engraving), deterministically; span cuts of two-system views per system."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xmr.data.manifest import read_views
from xmr.train.data import BatchSpec, ItemStore
from xmr.train.views import band_rows, view_index

SR = 16000
SIZE = (80, 160)
WINDOW = 8 * SR


@pytest.fixture(scope="module")
def stores(tiny_corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("views_cache")
    kw = dict(split="train", sample_rate=SR, image_size=SIZE, image_mode="L", cache_dir=cache, bar_spans=True)
    return (ItemStore.from_manifest(tiny_corpus, views=True, **kw),
            ItemStore.from_manifest(tiny_corpus, views=False, **kw))


def _spec(**kw) -> BatchSpec:
    base = dict(audio_samples=WINDOW, random_crop=True, span_prob=0.5, views=True)
    return BatchSpec(**{**base, **kw})


def _same(a, b) -> None:
    assert a.views == b.views and a.spans == b.spans and a.text == b.text
    assert torch.equal(a.audio, b.audio) and torch.equal(a.image, b.image)
    for m in ("audio", "image"):
        assert torch.equal(a.lengths[m], b.lengths[m])


def test_view_index_semantics():
    assert [view_index(u, 1, True) for u in (0.0, 0.49, 0.5, 0.99)] == [0, 0, 1, 1]
    assert [view_index(u, 2, 0.5) for u in (0.0, 0.3, 0.5, 0.9)] == [1, 2, 0, 0]
    assert view_index(0.1, 0, True) == 0 and view_index(0.1, 1, False) == 0 and view_index(0.99, 1, 1.0) == 1


def test_every_train_item_has_both_views(stores):
    views, _ = stores
    assert [v.name for v in views.views.by_modality["audio"]] == ["audio_sf"]
    assert [v.name for v in views.views.by_modality["image"]] == ["image_layout"]
    assert all(v.has.all() for m in ("audio", "image") for v in views.views.by_modality[m])


def test_draws_are_deterministic_and_process_count_independent(stores):
    views, _ = stores
    idx = list(range(len(views)))
    seen = {"audio": set(), "image": set()}
    for step in range(6):
        full = views.batch(idx, spec=_spec(), seed=3, step=step)
        _same(full, views.batch(idx, spec=_spec(), seed=3, step=step))
        half = len(idx) // 2  # two processes: each makes its rows of the same global batch
        parts = [views.batch(idx[:half], spec=_spec(), seed=3, step=step),
                 views.batch(idx[half:], spec=_spec(), seed=3, step=step)]
        for m in ("audio", "image"):
            assert parts[0].views[m] + parts[1].views[m] == full.views[m]
            seen[m].update(full.views[m])
        assert torch.equal(torch.cat([p.audio for p in parts]), full.audio)
        assert torch.equal(torch.cat([p.image for p in parts]), full.image)
    assert seen == {"audio": {"main", "audio_sf"}, "image": {"main", "image_layout"}}
    other = views.batch(idx, spec=_spec(), seed=4, step=0)
    first = views.batch(idx, spec=_spec(), seed=3, step=0)
    assert other.views != first.views  # the draw follows the seed


def test_off_leaves_batches_unchanged_and_main_rows_match(stores):
    views, plain = stores
    idx = list(range(len(views)))
    for step in range(3):
        off = plain.batch(idx, spec=_spec(views=False), seed=1, step=step)
        _same(off, views.batch(idx, spec=_spec(views=False), seed=1, step=step))
        _same(off, plain.batch(idx, spec=_spec(views=True), seed=1, step=step))  # no views decoded
        on = views.batch(idx, spec=_spec(views=True), seed=1, step=step)
        assert on.spans == off.spans  # the span draw is untouched
        for r in range(len(idx)):
            if on.views["audio"][r] == "main":
                assert torch.equal(on.audio[r], off.audio[r])
            else:  # another soundfont: the same bars, another sound
                assert not torch.equal(on.audio[r], off.audio[r])
            if on.views["image"][r] == "main":
                assert torch.equal(on.image[r], off.image[r])
            else:
                assert not torch.equal(on.image[r], off.image[r])


def _band_reference(png: Image.Image, bars, pieces, shift: int, height: int) -> np.ndarray:
    """The PNG's own pixels of each piece (its system's band, its columns), scaled and side by side."""
    rows = band_rows(bars, png.height)
    out = []
    for s, x0, x1, scale in pieces:
        top, bottom = rows[s]
        width = max(1, round(x1 * scale) - round(x0 * scale))
        crop = png.crop((x0 + shift, top, x1 + shift, bottom))
        crop = crop.resize((width, height), Image.Resampling.BICUBIC)
        out.append(np.asarray(crop, np.float32))
    return np.concatenate(out, axis=1)


def test_view_span_cuts_show_their_bars_per_system(stores, tiny_corpus):
    views, _ = stores
    layout = views.views.by_modality["image"][0]
    table = read_views(tiny_corpus)
    table = table[table["view"] == "image_layout"].set_index("id")
    crossing = cuts = 0
    for i, ident in enumerate(views.ids):
        rec = table.loc[ident]
        png = Image.open(rec["path"]).convert("L")
        bars = layout.bars[i]
        np.testing.assert_array_equal(bars["bar_x0"], rec["bar_x0"])
        n = len(bars["bar_x0"])
        for first in range(n - 1):
            for last in range(first + 1, n):
                strip = layout.span_strip(i, first, last)
                pieces = layout.span_pieces(i, first, last)
                assert strip.shape[:2] == (1, SIZE[0])
                # width = the x-range of each system's bars x that band's scale
                expect = sum((x1 - x0) * scale for _, x0, x1, scale in pieces)
                assert abs(strip.shape[2] - expect) <= len(pieces)
                rows = band_rows(bars, png.height)
                for s, _, _, scale in pieces:  # each band scaled to the model's height
                    assert scale == pytest.approx(SIZE[0] / (rows[s][1] - rows[s][0]), abs=0.01)
                crossing += len(pieces) > 1
                width = min(x1 - x0 for _, x0, x1, _ in pieces)
                ref0 = _band_reference(png, bars, pieces, 0, SIZE[0])
                ref1 = _band_reference(png, bars, pieces, width // 4, SIZE[0])
                got = strip[0].astype(np.float32)[:, :ref0.shape[1]]
                d0 = np.abs(ref0[:, :got.shape[1]] - got).mean()
                d1 = np.abs(ref1[:, :got.shape[1]] - got).mean()
                assert d0 < 0.5 * d1, (ident, first, last)
                cuts += 1
    assert crossing >= 1  # the build has a two-system engraving with a span over its line break
    assert cuts >= 2 * len(views)


def test_batch_rows_with_a_view_are_its_cut(stores):
    views, _ = stores
    idx = list(range(len(views)))
    spec = _spec(span_prob=1.0, views=1.0)
    batch = views.batch(idx, spec=spec, seed=0, step=2)
    layout = views.views.by_modality["image"][0]
    sf = views.views.by_modality["audio"][0]
    assert batch.views["image"] == ["image_layout"] * len(idx)
    assert batch.views["audio"] == ["audio_sf"] * len(idx)
    for r, i in enumerate(idx):
        span = batch.spans[r]
        if span is None:
            continue
        assert torch.equal(batch.image[r], views.span_image(i, *span, layout))
        assert int(batch.lengths["image"][r]) == views.span_width(i, *span, layout)
        wave = views.span_audio(i, *span, sf)[:WINDOW]
        np.testing.assert_array_equal(batch.audio[r, :len(wave)].numpy(), wave)
