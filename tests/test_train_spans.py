"""Aligned sub-excerpts: audio and image cut at the same bars of a real demo-corpus build."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image

from xmr.train.data import BatchSpec, ItemStore

SR = 16000
SIZE = (80, 160)
WINDOW = 8 * SR


@pytest.fixture(scope="module")
def items(tiny_corpus, tmp_path_factory):
    return ItemStore.from_manifest(tiny_corpus, split=None, sample_rate=SR, image_size=SIZE, image_mode="L",
                                   cache_dir=tmp_path_factory.mktemp("span_cache"), bar_spans=True)


def _spec(**kw) -> BatchSpec:
    base = dict(audio_samples=WINDOW, random_crop=True, span_prob=1.0, span_min_bars=2, span_max_bars=4)
    return BatchSpec(**{**base, **kw})


def test_cut_pair_matches_the_bar_alignment(items, tiny_corpus):
    df = pd.read_parquet(tiny_corpus)
    assert all(b is not None for b in items.bars)
    cuts = 0
    for i, row in df.iterrows():
        assert items.ids[i] == row["id"]
        onsets, ends = np.asarray(row["bar_onsets"]), np.asarray(row["bar_ends"])
        x0, x1 = np.asarray(row["bar_x0"]), np.asarray(row["bar_x1"])
        wave, sr = sf.read(tiny_corpus.parent / row["audio"], dtype="float32")
        png = Image.open(tiny_corpus.parent / row["image"]).convert("L")
        k = SIZE[0] / png.height  # the strips hold the images at the model's height
        n = len(onsets)
        for first in range(n - 1):
            for last in range(first + 1, n):
                audio = items.span_audio(i, first, last)
                a, b = round(onsets[first] * SR), round(ends[last] * SR)
                assert len(audio) == b - a  # the audio lasts exactly from the first onset to the last end
                assert abs(len(audio) / SR - (ends[last] - onsets[first])) <= 1 / SR
                np.testing.assert_allclose(audio, wave[a:b], atol=2e-4)
                strip = items.span_strip(i, first, last)
                assert strip.shape[:2] == (1, SIZE[0])
                assert abs(strip.shape[2] - (x1[last] - x0[first]) * k) <= 1.0  # the x-range, scaled
                # and it shows those columns of the PNG: far closer to them than to columns a
                # quarter of the span further right
                width = int(x1[last] - x0[first])

                def diff(shift: int, strip=strip, first=first, last=last, png=png, x0=x0, x1=x1):
                    ref = png.crop((int(x0[first]) + shift, 0, int(x1[last]) + shift, png.height)).resize(
                        (strip.shape[2], SIZE[0]), Image.Resampling.BICUBIC)
                    return np.abs(np.asarray(ref, np.float32) - strip[0].astype(np.float32)).mean()

                assert diff(0) < 0.5 * diff(width // 4), (row["id"], first, last)
                cuts += 1
    assert cuts >= 3 * len(df)


def test_span_batch_rows_are_the_cut_pairs(items):
    idx = list(range(len(items)))
    batch = items.batch(idx, spec=_spec(), seed=1, step=5)
    assert len(batch.spans) == len(idx)
    drawn = [s for s in batch.spans if s is not None]
    assert len(drawn) >= len(idx) - 2  # span_prob 1: every item with a span that fits the window
    for row, i in enumerate(idx):
        span = batch.spans[row]
        if span is None:
            continue
        first, last = span
        bars = items.bars[i]
        assert 2 <= last - first + 1 <= 4 and first >= 0 and last < len(bars["bar_onsets"])
        assert bars["bar_ends"][last] - bars["bar_onsets"][first] <= WINDOW / SR
        audio = items.span_audio(i, first, last)
        assert torch.equal(batch.audio[row, :len(audio)], torch.from_numpy(audio))
        assert batch.audio[row, len(audio):].abs().max() == 0  # padded after the last bar, not cropped
        assert torch.equal(batch.image[row], items.span_image(i, first, last))
        assert batch.image[row].shape == (1, *SIZE)
    # spans differ from the whole excerpt: shorter audio, a different image
    whole = items.batch(idx, spec=_spec(span_prob=0.0), seed=1, step=5)
    assert all(s is None for s in whole.spans)
    row = next(r for r, s in enumerate(batch.spans) if s is not None)
    assert not torch.equal(whole.image[row], batch.image[row])


def test_spans_are_seeded_and_independent_of_the_batch_split(items):
    idx = list(range(len(items)))
    spec = _spec(span_prob=0.5)
    a = items.batch(idx, spec=spec, seed=0, step=3)
    b = items.batch(idx, spec=spec, seed=0, step=3)
    assert a.spans == b.spans and torch.equal(a.audio, b.audio) and torch.equal(a.image, b.image)
    # the rows of two processes (each its half of the global batch) are the rows of one process
    half = len(idx) // 2
    p0 = items.batch(idx[:half], spec=spec, seed=0, step=3)
    p1 = items.batch(idx[half:], spec=spec, seed=0, step=3)
    assert p0.spans + p1.spans == a.spans
    assert torch.equal(torch.cat([p0.audio, p1.audio]), a.audio)
    assert torch.equal(torch.cat([p0.image, p1.image]), a.image)
    # another step or seed draws other spans; about half the items are cut
    draws = [items.batch(idx, spec=spec, seed=s, step=t).spans for s in (0, 1) for t in range(4)]
    assert len({tuple(d) for d in draws}) == len(draws)
    share = np.mean([s is not None for d in draws for s in d])
    assert 0.3 < share < 0.7
    # without spans nothing of the earlier augmentation changes (the span draw has its own generator)
    plain = items.batch(idx, spec=BatchSpec(audio_samples=WINDOW, random_crop=True), seed=0, step=3)
    off = items.batch(idx, spec=_spec(span_prob=0.0), seed=0, step=3)
    assert torch.equal(plain.audio, off.audio) and torch.equal(plain.image, off.image)


def test_items_without_alignment_stay_whole(tiny_corpus, tmp_path):
    from xmr.data.manifest import BAR_COLUMNS, read_manifest, write_manifest

    df = read_manifest(tiny_corpus).drop(columns=list(BAR_COLUMNS))
    path = tiny_corpus.parent / "no_bars.parquet"
    write_manifest(df, path)
    store = ItemStore.from_manifest(path, split=None, sample_rate=SR, image_size=SIZE, image_mode="L",
                                    cache_dir=tmp_path, bar_spans=True)
    batch = store.batch(list(range(len(store))), spec=_spec(), seed=0, step=0)
    assert all(s is None for s in batch.spans)


def test_span_config_is_validated():
    from xmr.errors import ConfigError
    from xmr.train.config import load_config

    base = {"data": {"manifest": "m.parquet"}}
    cfg = load_config(base=base, overrides=["data.span_prob=0.5", "data.span_max_bars=6"])
    assert (cfg.data.span_prob, cfg.data.span_min_bars, cfg.data.span_max_bars) == (0.5, 2, 6)
    assert load_config(base=base).data.span_prob == 0.0  # off unless asked for
    for bad in (["data.span_prob=1.5"], ["data.span_min_bars=1"],
                ["data.span_min_bars=5", "data.span_max_bars=3"]):
        with pytest.raises(ConfigError):
            load_config(base=base, overrides=bad)


def test_training_with_spans_runs_and_resumes_exactly(tiny_corpus, tmp_path):
    """The trainer cuts spans (config switch) and an interrupted run resumes to the same weights."""
    from pathlib import Path

    from xmr.train.config import load_config
    from xmr.train.loop import train

    config = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"

    def cfg():
        return load_config(config, [f"data.manifest={tiny_corpus}", "data.span_prob=0.7",
                                    "model.audio_window_seconds=4.0", "data.batch_size=4", "train.steps=4",
                                    "data.val_max_items=4", f"data.cache_dir={tmp_path / 'cache'}"])

    train(cfg(), out_dir=tmp_path / "full")
    assert list((tmp_path / "cache").glob("train-*/strips.npy"))  # the span images were cached
    train(cfg(), out_dir=tmp_path / "part", stop_after=2)
    train(cfg(), out_dir=tmp_path / "part", resume=True)
    full = torch.load(tmp_path / "full" / "state.pt", weights_only=False)["model"]
    part = torch.load(tmp_path / "part" / "state.pt", weights_only=False)["model"]
    assert all(torch.equal(full[k], part[k]) for k in full)
