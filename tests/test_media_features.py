"""Audio features checked against a plain NumPy reference, and the fixed windows for long audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from xmr.errors import ConfigError
from xmr.media.features import (
    SpectrogramConfig,
    complex_stft,
    compute_features,
    fixed_windows,
    log_mel,
    split_windows,
)


def numpy_stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred (reflect-padded) STFT with a periodic Hann window: (F, frames) complex."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    cols = [np.fft.rfft(padded[i * hop: i * hop + n_fft] * window) for i in range(frames)]
    return np.stack(cols, axis=1)


def test_logmel_shape_and_numpy_reference():
    cfg = SpectrogramConfig()
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    out = compute_features(torch.from_numpy(x), cfg)
    assert out.shape == (1, 1, 64, cfg.num_frames(8000)) == (1, 1, 64, 26)
    power = np.abs(numpy_stft(x.astype(np.float64), 1024, 320)) ** 2  # (513, frames)
    fb = AF.melscale_fbanks(513, 0.0, 8000.0, 64, 16000).numpy().astype(np.float64)  # (513, 64)
    ref = 10 * np.log10(np.maximum(fb.T @ power, 1e-10))
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-3)


def test_stft_real_imag_match_numpy():
    cfg = SpectrogramConfig(kind="stft", n_fft=512, win_length=512, hop_length=128)
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    out = compute_features(x, cfg)
    assert out.shape == (1, 2, 257, cfg.num_frames(4000))
    ref = numpy_stft(x.astype(np.float64), 512, 128)
    np.testing.assert_allclose(out[0, 0].numpy(), ref.real, atol=2e-3)
    np.testing.assert_allclose(out[0, 1].numpy(), ref.imag, atol=2e-3)
    assert torch.equal(out, complex_stft(torch.from_numpy(x), cfg))


def test_sine_peaks_in_the_right_mel_band():
    cfg = SpectrogramConfig(n_mels=64)
    t = np.arange(16000) / 16000
    mel = log_mel(torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32), cfg)
    centres = AF.melscale_fbanks(513, 0.0, 8000.0, 64, 16000).argmax(dim=0) * 16000 / 1024  # Hz per band
    peak_band = int(mel[0, 0].mean(dim=1).argmax())
    assert abs(float(centres[peak_band]) - 1000) < 100


@pytest.mark.parametrize("kind", ["logmel", "stft"])
def test_features_do_not_depend_on_the_batch(kind):
    cfg = SpectrogramConfig(kind=kind, top_db=80.0)
    batch = torch.randn(3, 6000)
    batch[1] *= 1e-3  # a quiet item beside loud ones: per-batch dB clamping would change it
    together = compute_features(batch, cfg)
    for i in range(3):
        torch.testing.assert_close(compute_features(batch[i], cfg)[0], together[i])


def test_top_db_clamps_per_item():
    cfg = SpectrogramConfig(top_db=40.0)
    x = torch.zeros(1, 8000)
    x[0, :100] = 1.0
    out = log_mel(x, cfg)
    assert float(out.max() - out.min()) == pytest.approx(40.0, abs=1e-4)


def test_config_round_trip_and_validation():
    cfg = SpectrogramConfig(kind="stft", n_fft=2048, win_length=2048, hop_length=512, f_max=7000.0)
    assert SpectrogramConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.n_bins == 1025 and cfg.channels == 2
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in SpectrogramConfig: n_mel; known: amin"):
        SpectrogramConfig.from_dict({"n_mel": 64})
    with pytest.raises(ConfigError, match="kind"):
        SpectrogramConfig(kind="mfcc")
    with pytest.raises(ConfigError, match="win_length"):
        SpectrogramConfig(n_fft=512, win_length=1024)


def test_fixed_windows_cover_deterministically():
    assert fixed_windows(10, 4, 0.5) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert fixed_windows(11, 4, 0.5) == [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]
    assert fixed_windows(12, 4, 0.0) == [(0, 4), (4, 8), (8, 12)]
    for n, w, ov in [(100_003, 48_000, 0.5), (5, 5, 0.5), (97, 10, 0.25)]:
        ranges = fixed_windows(n, w, ov)
        assert ranges == fixed_windows(n, w, ov)
        covered = np.zeros(n, bool)
        for s, e in ranges:
            assert e - s == min(w, n) and 0 <= s < e <= n
            covered[s:e] = True
        assert covered.all()


def test_short_signal_gives_one_window():
    assert fixed_windows(3, 10) == [(0, 3)]
    crops, ranges = split_windows(np.ones(3, np.float32), window=10)
    assert ranges == [(0, 3)] and crops.shape == (1, 10)
    np.testing.assert_array_equal(crops[0], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])


def test_split_windows_slices_match_ranges():
    wave = np.arange(25, dtype=np.float32)
    crops, ranges = split_windows(wave, window=10, overlap=0.5)
    for crop, (s, e) in zip(crops, ranges, strict=True):
        np.testing.assert_array_equal(crop, wave[s:e])


def test_fixed_windows_reject_bad_arguments():
    with pytest.raises(ValueError):
        fixed_windows(0, 10)
    with pytest.raises(ValueError):
        fixed_windows(10, 4, overlap=1.0)
