"""Real-input augmentation (xmr.media.augment): each transform does what it says, draws are seeded
per (seed, step, item), the training batches apply it through BatchSpec.augment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr.errors import ConfigError
from xmr.media.augment import AudioAugmentConfig, ImageAugmentConfig, build_augment

SR = 16000
AUDIO_OFF = {f.name: 0.0 for f in AudioAugmentConfig.__dataclass_fields__.values() if f.name.startswith("p_")}
IMAGE_OFF = {f.name: 0.0 for f in ImageAugmentConfig.__dataclass_fields__.values() if f.name.startswith("p_")}


def _audio_only(**kw):
    return build_augment({"name": "audio", "audio": {**AUDIO_OFF, **kw}})


def _image_only(**kw):
    return build_augment({"name": "image", "image": {**IMAGE_OFF, **kw}})


def _gen(k: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(k)


def _white(seconds: float = 2.0, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


def _tone(hz: float = 440.0, seconds: float = 2.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _energy_above(x: np.ndarray, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    return float(spec[np.fft.rfftfreq(len(x), 1 / SR) > hz].sum() / spec.sum())


def _score(h: int = 80, w: int = 160) -> torch.Tensor:
    """A score-like image: white paper, five staff lines, a few note heads."""
    img = torch.ones(1, h, w)
    for k in range(5):
        img[:, 28 + 6 * k, 8:-8] = 0.0
    for x in range(20, w - 20, 17):
        img[:, 34:38, x:x + 5] = 0.0
    return img


# ------------------------------------------------------------------ configs
def test_presets_and_strict_configs():
    assert build_augment(None) is None and build_augment("none") is None
    real = build_augment("real")
    assert real.audio_cfg == AudioAugmentConfig() and real.image_cfg == ImageAugmentConfig()
    assert build_augment("audio").image_cfg is None and build_augment("image").audio_cfg is None
    assert build_augment({"name": "real", "image": None}).image_cfg is None
    assert real.without("audio", "image") is None and real.without("image").audio_cfg is real.audio_cfg
    over = build_augment({"name": "real", "audio": {"p_noise": 1, "noise_snr_db": [10, 10]}})
    assert over.audio_cfg.p_noise == 1.0 and over.audio_cfg.noise_snr_db == (10.0, 10.0)
    assert over.audio_cfg.p_codec == AudioAugmentConfig().p_codec  # the rest from the preset
    for bad in ("loud", {"name": "real", "audio": {"p_nosie": 0.5}}, {"nme": "real"},
                {"audio": {"p_noise": 1.5}}, {"audio": {"tempo": [1.2, 0.9]}}, {"audio": {"codecs": ["ogg"]}},
                {"image": {"jpeg_quality": [0, 50]}}, {"audio": {"band_low_hz": [300, 4000]}}):
        with pytest.raises(ConfigError):
            build_augment(bad)


def test_training_config_switch():
    from xmr.train.config import load_config

    base = {"data": {"manifest": "m.parquet"}}
    assert load_config(base=base).data.augment is None  # off unless asked for
    cfg = load_config(base=base, overrides=["data.augment=real"])
    assert cfg.data.augment == "real"
    cfg = load_config(base=base, overrides=["data.augment={name: real, audio: {p_noise: 0.9}}"])
    assert build_augment(cfg.data.augment).audio_cfg.p_noise == 0.9
    with pytest.raises(ConfigError):
        load_config(base=base, overrides=["data.augment={audio: {p_reverbb: 1}}"])


# ------------------------------------------------------------------ audio transforms
def test_noise_at_10_db_snr():
    tone = _tone()
    for decay in (-6.0, 0.0, 3.0):  # brown, white, blue
        aug = _audio_only(p_noise=1, noise_snr_db=[10, 10], noise_decay_db=[decay, decay])
        out = aug.audio(tone, SR, gen=_gen())
        snr = 10 * np.log10(np.sum(tone ** 2) / np.sum((out - tone) ** 2))
        assert abs(snr - 10.0) < 0.3, (decay, snr)


def test_telephone_band_removes_energy_outside_300_3400_hz():
    white = _white()
    out = _audio_only(p_band=1, band_low_hz=[300, 300], band_high_hz=[3400, 3400],
                      band_rolloff_db=[48, 48]).audio(white, SR, gen=_gen())
    assert _energy_above(white, 3400) > 0.5  # white noise at 16 kHz: over half above 3.4 kHz
    assert _energy_above(out, 3400) < 0.05 and _energy_above(out, 5000) < 1e-4
    assert 1 - _energy_above(out, 300) < 0.01  # and below 300 Hz


def test_tempo_stretches_without_changing_pitch_and_keeps_a_span_whole():
    tone = _tone(440.0)
    fast = _audio_only(p_tempo=1, tempo=[1.1, 1.1]).audio(tone, SR, gen=_gen())
    assert abs(len(fast) / len(tone) - 1 / 1.1) < 0.01
    freqs = np.fft.rfftfreq(len(fast), 1 / SR)
    assert abs(freqs[np.abs(np.fft.rfft(fast)).argmax()] - 440.0) < 2.0
    slow = _audio_only(p_tempo=1, tempo=[0.9, 0.9])
    assert len(slow.audio(tone, SR, gen=_gen())) == pytest.approx(len(tone) / 0.9, rel=0.01)
    # a span (fit="keep") is slowed only as far as the window allows: nothing of it is cut off
    window = int(len(tone) * 1.05)
    kept = slow.audio(tone, SR, gen=_gen(), max_samples=window, fit="keep")
    assert window - 0.01 * len(tone) <= len(kept) <= window
    assert np.abs(kept[-SR // 10:]).max() > 0.1  # still sounding at its end: the span's end is there
    # a crop of a whole excerpt (fit="trim") is cut source_samples long, so a faster tempo fills the window
    fast_aug = _audio_only(p_tempo=1, tempo=[1.1, 1.1])
    n = fast_aug.source_samples(SR)
    assert n == int(np.ceil(SR * 1.1))
    assert len(fast_aug.audio(_tone()[:n], SR, gen=_gen(), max_samples=SR, fit="trim")) == SR


def test_gain_reverb_and_codecs():
    tone, white = _tone(), _white()
    out = _audio_only(p_gain=1, gain_db=[-6, -6]).audio(tone, SR, gen=_gen())
    assert np.sqrt(np.mean(out ** 2) / np.mean(tone ** 2)) == pytest.approx(10 ** (-6 / 20), rel=1e-3)
    burst = np.zeros(2 * SR, np.float32)
    burst[:SR // 4] = white[:SR // 4]
    wet = _audio_only(p_reverb=1, reverb_room=[0.9, 0.9], reverb_wet=[0.5, 0.5]).audio(burst, SR, gen=_gen())
    assert len(wet) == len(burst) and np.sum(wet[SR // 2:] ** 2) > 0.01 * np.sum(burst ** 2)  # a room tail
    gsm = _audio_only(p_codec=1, codecs=["gsm"]).audio(white, SR, gen=_gen())
    assert len(gsm) == len(white) and _energy_above(gsm, 4000) < 0.02  # GSM runs at 8 kHz
    mp3 = _audio_only(p_codec=1, codecs=["mp3"], mp3_vbr_quality=[9, 9]).audio(tone + 0.05 * white, SR,
                                                                                gen=_gen())
    assert len(mp3) == len(tone) and not np.allclose(mp3, tone + 0.05 * white, atol=1e-3)
    assert np.corrcoef(mp3, tone)[0, 1] > 0.9  # lossy, not destroyed


def test_audio_is_seeded_and_leaves_global_random_states_alone():
    import random

    aug = build_augment({"name": "audio", "audio": {k: 1.0 for k in AUDIO_OFF}})
    wave = _tone() + _white(level=0.02)
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    a = aug.audio(wave, SR, gen=_gen(7), max_samples=2 * SR, fit="trim")
    b = aug.audio(wave, SR, gen=_gen(7), max_samples=2 * SR, fit="trim")
    c = aug.audio(wave, SR, gen=_gen(8), max_samples=2 * SR, fit="trim")
    assert np.array_equal(a, b) and not np.array_equal(a[:len(c)], c[:len(a)])
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.get_rng_state(), state[2])
    assert a.dtype == np.float32 and np.abs(a).max() <= 1.0
    # a transform that is off keeps the other transforms' draws
    less = build_augment({"name": "audio", "audio": {**{k: 1.0 for k in AUDIO_OFF}, "p_eq": 0.0}})
    pa, pb = aug.audio_plan(_gen(7)), less.audio_plan(_gen(7))
    assert "eq" not in pb and {k: v for k, v in pa.items() if k != "eq"} == pb


# ------------------------------------------------------------------ image transforms
def test_image_transforms_change_the_score_as_expected():
    img = _score()
    persp = _image_only(p_perspective=1, perspective=[0.3, 0.3]).image(img, gen=_gen())
    assert persp.shape == img.shape and not torch.equal(persp, img)
    assert persp[:, :3, :].min() > 0.95 and persp[:, -3:, :].min() > 0.95  # the border stays paper-white
    rot = _image_only(p_rotate=1, rotate_degrees=3.0).image(img, gen=_gen(1))
    assert not torch.equal(rot, img) and rot[:, :, :4].min() > 0.95
    blur = _image_only(p_blur=1, blur_sigma=[1.0, 1.0]).image(img, gen=_gen())
    assert (blur[:, 1:] - blur[:, :-1]).abs().sum() < 0.6 * (img[:, 1:] - img[:, :-1]).abs().sum()
    gray = torch.full((1, 80, 160), 0.5)
    noisy = _image_only(p_noise=1, noise_std=[0.05, 0.05]).image(gray, gen=_gen())
    assert float((noisy - gray).std()) == pytest.approx(0.05, rel=0.1)
    light = _image_only(p_light=1, light_gain=[0.3, 0.3]).image(gray, gen=_gen())
    corners = [float(light[0, :10, :10].mean()), float(light[0, -10:, -10:].mean()),
               float(light[0, :10, -10:].mean()), float(light[0, -10:, :10].mean())]
    assert max(corners) - min(corners) > 0.1  # uneven: one corner lighter or darker than another
    shadow = _image_only(p_shadow=1, shadow_intensity=[0.5, 0.5]).image(img, gen=_gen())
    assert float(shadow.mean()) < float(img.mean()) - 0.02 and float(shadow.max()) <= 1.0
    jpeg = _image_only(p_jpeg=1, jpeg_quality=[10, 10]).image(img[:, :75, :150], gen=_gen())
    assert jpeg.shape == (1, 75, 150) and 0.001 < float((jpeg - img[:, :75, :150]).abs().mean()) < 0.2


def test_image_is_seeded_per_key():
    aug = build_augment({"name": "image", "image": {k: 1.0 for k in IMAGE_OFF}})
    img = _score()
    state = torch.get_rng_state()
    a, b, c = (aug.image(img, gen=_gen(k)) for k in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


# ------------------------------------------------------------------ the training batches
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A synthetic collection (real WAV/PNG files) with a made-up bar alignment of three bars each."""
    from xmr.data.manifest import read_manifest, write_manifest
    from xmr.data.synthetic import write_synthetic_collection
    from xmr.train.data import ItemStore

    folder = tmp_path_factory.mktemp("augment")
    df = read_manifest(write_synthetic_collection(folder, n_train=6, n_val=2, seconds=1.5))
    df["bar_onsets"] = [[0.0, 0.5, 1.0]] * len(df)
    df["bar_ends"] = [[0.5, 1.0, 1.5]] * len(df)
    df["bar_x0"] = [[0, 30, 60]] * len(df)
    df["bar_x1"] = [[30, 60, 90]] * len(df)
    write_manifest(df, folder / "bars.parquet")
    return ItemStore.from_manifest(folder / "bars.parquet", split="train", sample_rate=SR,
                                   image_size=(32, 96), cache_dir=folder / "cache", bar_spans=True)


def test_batches_are_augmented_per_item_whatever_the_split(store):
    from xmr.train.data import BatchSpec

    aug = build_augment({"name": "real", "audio": {k: 0.7 for k in AUDIO_OFF},
                         "image": {k: 0.7 for k in IMAGE_OFF}})
    spec = BatchSpec(audio_samples=SR, random_crop=True, augment=aug, span_prob=0.5)
    idx = list(range(len(store)))
    a = store.batch(idx, spec=spec, seed=0, step=3)
    b = store.batch(idx, spec=spec, seed=0, step=3)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.image, b.image)
    p0 = store.batch(idx[:3], spec=spec, seed=0, step=3)  # two processes, each its half
    p1 = store.batch(idx[3:], spec=spec, seed=0, step=3)
    assert torch.equal(torch.cat([p0.audio, p1.audio]), a.audio)
    assert torch.equal(torch.cat([p0.image, p1.image]), a.image)
    c = store.batch(idx, spec=spec, seed=0, step=4)
    assert not torch.equal(a.audio, c.audio) and not torch.equal(a.image, c.image)
    plain = BatchSpec(audio_samples=SR, random_crop=True, span_prob=0.5)
    clean = store.batch(idx, spec=plain, seed=0, step=3)
    assert a.spans == clean.spans  # the augmentation leaves the span draws as they were
    changed = [not torch.equal(a.audio[r], clean.audio[r]) for r in range(len(idx))]
    assert sum(changed) >= len(idx) - 1 and a.audio.shape == clean.audio.shape == (len(idx), SR)
    assert a.image.shape == clean.image.shape and not torch.equal(a.image, clean.image)


def test_a_time_stretched_span_keeps_its_bars(store):
    from xmr.train.data import BatchSpec

    slow = build_augment({"name": "audio", "audio": {**AUDIO_OFF, "p_tempo": 1.0, "tempo": [0.8, 0.8]}})
    window = int(1.1 * SR)
    spec = BatchSpec(audio_samples=window, span_prob=1.0, span_min_bars=2, span_max_bars=2, augment=slow)
    batch = store.batch(list(range(len(store))), spec=spec, seed=0, step=0)
    for row, span in enumerate(batch.spans):
        assert span is not None and span[1] == span[0] + 1  # two bars: 1.0 s of audio
        sounding = np.flatnonzero(np.abs(batch.audio[row].numpy()) > 1e-3)
        # slowed to fit the 1.1 s window (not to the 1.25 s of tempo 0.8, which would cut the second bar)
        assert sounding[-1] > 1.02 * SR


def test_training_with_augmentation_runs_and_is_reproducible(tmp_path):
    from pathlib import Path

    from xmr.train.config import load_config
    from xmr.train.loop import train

    root = Path(__file__).resolve().parents[1]
    manifest = tmp_path / "data" / "manifest.parquet"
    weights = []
    for run, augment in (("a", "real"), ("b", "real"), ("off", "none")):
        cfg = load_config(root / "configs" / "tiny.yaml", [
            f"data.manifest={manifest}", "train.steps=2", f"data.augment={augment}", "train.ckpt_every=0",
            f"data.cache_dir={tmp_path / 'cache'}"])
        report = train(cfg, out_dir=tmp_path / run)
        assert report["steps"] == 2
        weights.append(torch.load(tmp_path / run / "state.pt", weights_only=False)["model"])
    same, off = weights[1], weights[2]
    assert weights[0].keys() == same.keys() == off.keys()
    assert all(torch.equal(weights[0][k], same[k]) for k in same)  # the same run twice: the same weights
    assert not all(torch.equal(weights[0][k], off[k]) for k in off)  # and the switch reaches the batches
