"""Audio features through torchaudio, with every parameter in one config object.

Four kinds (see REFERENCES.md):

- ``"logmel"`` — log-mel power spectrogram (Chao et al. 2022, Sec. II-C: 64 mel bins, window 1024,
  hop 320 at 16 kHz), ``10·log10(max(S, amin))`` (torchaudio ``AmplitudeToDB``), shape
  ``(B, 1, n_mels, frames)``;
- ``"stft"`` — the complex STFT (Nakatsuka et al. 2023, Sec. 4.1.2: 1025 bins with n_fft 2048,
  hop 512) as two real channels ``(B, 2, n_fft // 2 + 1, frames)``: real and imaginary parts;
- ``"logfreq"`` — a log-frequency spectrogram that keeps pitch (Dorfer et al. 2018: 16 bins per
  octave from 30 Hz to 6 kHz, 20 frames/s): the STFT magnitude through a bank of triangular
  filters centred on log-spaced frequencies, filters that fall on the same FFT bin merged (as
  madmom's ``LogarithmicFilterbank``, so the low bins are FFT bins, not interpolations), then
  ``log(1 + S)``, shape ``(B, 1, n_bins, frames)``;
- ``"cqt"`` — a constant-Q transform magnitude from nnAudio (``CQT1992v2``; Cheuk et al. 2020),
  ``bins_per_octave`` bins from ``f_min`` up to ``f_max``, then ``log(1 + S)``.

``logfreq`` and ``cqt`` pad the wave with zeros (not a reflection) when centring frames, so the
first ``num_frames(L)`` frames of a wave of ``L`` samples are the same whether or not zeros follow
it: a padded batch gives each item the frames it has alone, and sequence towers mask the rest.

All are computed per item (no statistic is shared across a batch), so a wave gives the same
features alone or inside any batch. :func:`fixed_windows` cuts long audio into deterministic,
overlapping windows (Nakatsuka et al. 2023 average embeddings over 50%-overlapping crops).

Example::

    cfg = SpectrogramConfig(kind="logmel", n_mels=64)
    feats = compute_features(torch.randn(2, 16000), cfg)  # (2, 1, 64, 51)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xmr.config import strict_from_dict
from xmr.errors import ConfigError

KINDS = ("logmel", "stft", "logfreq", "cqt")
PITCH_KINDS = ("logfreq", "cqt")  # log-frequency axes: bins_per_octave, f_min > 0


@dataclass
class SpectrogramConfig:
    """Parameters of the audio front end; saved in checkpoints so that inference matches training.

    Args:
        sample_rate: rate of the input waves in Hz.
        kind: ``"logmel"``, ``"stft"`` (complex, as real/imaginary channels), ``"logfreq"`` or
            ``"cqt"`` (log-frequency axes that keep pitch).
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins.
        win_length: Hann window length in samples (``<= n_fft``).
        hop_length: hop between frames in samples.
        n_mels: number of mel bands (``"logmel"`` only).
        f_min: lowest mel / log-frequency band in Hz (``> 0`` for ``logfreq`` and ``cqt``).
        f_max: highest band in Hz (``None``: Nyquist).
        amin: floor of the power before the logarithm (avoids ``log(0)``).
        top_db: if set, clamp each item's log-mel to ``max - top_db`` (per item, never per batch).
        center: pad the wave so that frame ``t`` is centred at ``t * hop_length``.
        bins_per_octave: bands per octave of ``logfreq`` / ``cqt`` (``None`` for the other kinds,
            and then left out of :meth:`to_dict`, so that older configs keep their fingerprint).

    Example::

        cfg = SpectrogramConfig.from_dict({"kind": "stft", "n_fft": 2048, "win_length": 2048,
                                           "hop_length": 512})
    """

    sample_rate: int = 16000
    kind: str = "logmel"
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    amin: float = 1e-10
    top_db: float | None = None
    center: bool = True
    bins_per_octave: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"SpectrogramConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in PITCH_KINDS:
            if self.bins_per_octave is None or int(self.bins_per_octave) < 1:
                raise ConfigError(f"SpectrogramConfig kind {self.kind!r} needs bins_per_octave >= 1")
            if self.f_min <= 0:
                raise ConfigError(f"SpectrogramConfig kind {self.kind!r} needs f_min > 0, got {self.f_min}")
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"SpectrogramConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"SpectrogramConfig.win_length ({self.win_length}) exceeds n_fft ({self.n_fft})"
            )
        nyquist = self.sample_rate / 2
        if self.f_max is not None and not (self.f_min < self.f_max <= nyquist):
            raise ConfigError(
                f"SpectrogramConfig needs f_min < f_max <= {nyquist:g}, got {self.f_min}, {self.f_max}"
            )

    @property
    def n_bins(self) -> int:
        """Frequency rows of the output: ``n_mels`` for log-mel, ``n_fft // 2 + 1`` for the STFT,
        the merged filters for ``logfreq``, the bands from ``f_min`` to ``f_max`` for ``cqt``."""
        if self.kind == "logmel":
            return self.n_mels
        if self.kind == "logfreq":
            return int(logfreq_filterbank(self).shape[0])
        if self.kind == "cqt":
            return _cqt_bins(self)
        return self.n_fft // 2 + 1

    @property
    def channels(self) -> int:
        """Channels of the output: 2 (real, imaginary) for the STFT, else 1."""
        return 2 if self.kind == "stft" else 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a wave of ``num_samples`` samples."""
        if self.center:
            return num_samples // self.hop_length + 1
        return max(0, (num_samples - self.n_fft) // self.hop_length + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields (``bins_per_octave`` only when set)."""
        data = dataclasses.asdict(self)
        if data["bins_per_octave"] is None:
            del data["bins_per_octave"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrogramConfig:
        """Build from a dict such as :meth:`to_dict` wrote; unknown keys are an error (typos)."""
        return strict_from_dict(cls, data)


def compute_features(wave: torch.Tensor | np.ndarray, cfg: SpectrogramConfig) -> torch.Tensor:
    """Features of a batch of waves as the config asks.

    Args:
        wave: ``(B, T)`` or ``(T,)`` float waves at ``cfg.sample_rate``.
        cfg: the front-end parameters.

    Returns:
        ``(B, 1, n_mels, frames)`` for ``"logmel"``, ``(B, 2, n_fft // 2 + 1, frames)`` for ``"stft"``,
        ``(B, 1, n_bins, frames)`` for ``"logfreq"`` and ``"cqt"``.

    Example::

        x = compute_features(torch.zeros(16000) + 0.1, SpectrogramConfig())  # (1, 1, 64, 51)
    """
    if cfg.kind == "logmel":
        return log_mel(wave, cfg)
    if cfg.kind == "logfreq":
        return log_frequency(wave, cfg)
    if cfg.kind == "cqt":
        return log_cqt(wave, cfg)
    return complex_stft(wave, cfg)


def log_mel(wave: torch.Tensor | np.ndarray, cfg: SpectrogramConfig) -> torch.Tensor:
    """Log-mel power spectrogram, ``10·log10(max(mel, amin))`` in dB: ``(B, 1, n_mels, frames)``.

    Example::

        x = log_mel(torch.randn(16000), SpectrogramConfig(n_mels=64))
    """
    x = _as_batch(wave)  # (B, T)
    mel = _transform("mel", cfg, x.device)(x)  # (B, n_mels, frames) power
    db = 10.0 * torch.log10(torch.clamp(mel, min=cfg.amin))
    if cfg.top_db is not None:
        floor = db.amax(dim=(-2, -1), keepdim=True) - cfg.top_db  # per item
        db = torch.maximum(db, floor)
    return db.unsqueeze(1)


def complex_stft(wave: torch.Tensor | np.ndarray, cfg: SpectrogramConfig) -> torch.Tensor:
    """Complex STFT (Hann window) as real/imaginary channels: ``(B, 2, n_fft // 2 + 1, frames)``.

    Example::

        x = complex_stft(torch.randn(16000), SpectrogramConfig(kind="stft"))
    """
    x = _as_batch(wave)
    spec = _transform("stft", cfg, x.device)(x)  # (B, F, frames) complex
    return torch.view_as_real(spec).permute(0, 3, 1, 2).contiguous()


def log_frequency(wave: torch.Tensor | np.ndarray, cfg: SpectrogramConfig) -> torch.Tensor:
    """Log-frequency spectrogram ``log(1 + |STFT| @ filters)``: ``(B, 1, n_bins, frames)``
    (Dorfer et al. 2018; filters from :func:`logfreq_filterbank`).

    Example::

        cfg = SpectrogramConfig(kind="logfreq", n_fft=4096, win_length=4096, hop_length=320,
                                f_min=30.0, f_max=6000.0, bins_per_octave=16)
        x = log_frequency(torch.randn(16000), cfg)  # (1, 1, cfg.n_bins, 51)
    """
    x = _as_batch(wave)
    mag = _transform("stft_mag", cfg, x.device)(x)  # (B, n_fft // 2 + 1, frames)
    fb = _filterbank_tensor(cfg, x.device)  # (n_bins, n_fft // 2 + 1)
    return torch.log1p(torch.matmul(fb, mag)).unsqueeze(1)


def log_cqt(wave: torch.Tensor | np.ndarray, cfg: SpectrogramConfig) -> torch.Tensor:
    """Constant-Q magnitude from nnAudio's ``CQT1992v2`` (Cheuk et al. 2020), ``log(1 + S)``:
    ``(B, 1, n_bins, frames)``; needs the ``nnAudio`` package."""
    x = _as_batch(wave)
    spec = _transform("cqt", cfg, x.device)(x)  # (B, n_bins, frames)
    return torch.log1p(spec).unsqueeze(1)


def logfreq_filterbank(cfg: SpectrogramConfig) -> np.ndarray:
    """Triangular filters on log-spaced centres, ``(n_bins, n_fft // 2 + 1)`` float32.

    Centres ``f_min * 2 ** (k / bins_per_octave)`` up to ``f_max`` are snapped to the nearest FFT
    bin and repeated bins are dropped (madmom's ``LogarithmicFilterbank`` with ``unique_filters``,
    as Dorfer et al. 2018 use it: 16 bins per octave from 30 Hz to 6 kHz). Filter ``k`` rises from
    bin ``c[k-1]`` to ``c[k]`` and falls to ``c[k+1]``; each is normalised to unit sum. With
    ``n_fft`` 4096 at 16 kHz the FFT bins are 3.9 Hz apart, so semitones stay apart from about
    65 Hz (C2) up.
    """
    key = ("fb", cfg.sample_rate, cfg.n_fft, float(cfg.f_min), cfg.f_max, int(cfg.bins_per_octave or 0))
    cached = _FILTERBANKS.get(key)
    if cached is not None:
        return cached
    f_max = float(cfg.f_max or cfg.sample_rate / 2)
    n_fft_bins = cfg.n_fft // 2 + 1
    bin_hz = cfg.sample_rate / cfg.n_fft
    count = int(math.floor(cfg.bins_per_octave * math.log2(f_max / cfg.f_min))) + 1
    centres = cfg.f_min * 2.0 ** (np.arange(count) / cfg.bins_per_octave)
    bins = np.unique(np.clip(np.round(centres / bin_hz).astype(int), 0, n_fft_bins - 1))
    if len(bins) < 3:
        raise ConfigError(f"logfreq: too few distinct FFT bins between {cfg.f_min} and {f_max} Hz")
    fb = np.zeros((len(bins) - 2, n_fft_bins), np.float32)
    for k in range(1, len(bins) - 1):
        lo, mid, hi = bins[k - 1], bins[k], bins[k + 1]
        fb[k - 1, lo:mid + 1] = np.linspace(0.0, 1.0, mid - lo + 1)  # rising edge, peak at mid
        fb[k - 1, mid:hi + 1] = np.linspace(1.0, 0.0, hi - mid + 1)
        fb[k - 1, mid] = 1.0
        fb[k - 1] /= fb[k - 1].sum()
    _FILTERBANKS[key] = fb
    return fb


# The bands of the pitch-class profiles, in Hz from a quarter tone below their lowest note to a
# quarter tone above their highest: the whole range of the music's fundamentals (C2 to C7) and the
# bass (C2 to B3), whose lowest notes most often name the key and the chord.
PROFILE_BANDS = {"all": (63.57, 2154.0), "bass": (63.57, 254.2)}


def profile_stft(sample_rate: int) -> SpectrogramConfig:
    """The STFT the pitch-class profiles read: about 4 Hz between FFT bins (4,096 points at
    16 kHz), so that the semitones stay apart from C2 up, and a hop of half a window (a profile
    is a mean over the frames)."""
    n_fft = 2 ** round(math.log2(sample_rate / 4))
    return SpectrogramConfig(sample_rate=sample_rate, kind="stft", n_fft=n_fft, win_length=n_fft,
                             hop_length=n_fft // 2)


def pitch_class_fold(sample_rate: int, f_lo: float, f_hi: float) -> np.ndarray:
    """``(12, n_fft // 2 + 1)`` weights that fold the FFT bins of :func:`profile_stft` between
    ``f_lo`` and ``f_hi`` Hz onto the 12 pitch classes (0 = C), as a chroma filterbank does
    (Fujishima, ICMC 1999; Müller, *Fundamentals of Music Processing*, 2015, Sec. 3.1.2): a bin
    whose frequency lies ``d`` semitones from a class (circularly, equal temperament at A = 440
    Hz) gives it ``max(0, 1 - |d|)``, so a bin between two classes is shared by both; each class
    is then the mean of its bins."""
    cfg = profile_stft(sample_rate)
    freqs = np.arange(cfg.n_fft // 2 + 1) * (sample_rate / cfg.n_fft)
    inside = (freqs >= f_lo) & (freqs <= f_hi)
    pitch = 12.0 * np.log2(np.where(inside, freqs, 440.0) / 440.0) + 69.0  # MIDI number of each bin
    dist = (pitch[None, :] - np.arange(12)[:, None] + 6.0) % 12.0 - 6.0
    fold = np.maximum(0.0, 1.0 - np.abs(dist)) * inside[None, :]
    fold /= np.maximum(fold.sum(axis=1, keepdims=True), 1e-12)
    return fold.astype(np.float32)


def pitch_class_profile(wave: torch.Tensor, lengths: torch.Tensor, fold: torch.Tensor,
                        sample_rate: int) -> torch.Tensor:
    """Pitch-class profile of each wave of a batch: the magnitude of :func:`profile_stft`
    averaged over the frames of each item's ``lengths[b]`` samples (the zeros after them, padding,
    are not read), folded by ``fold`` (``(P, n_fft // 2 + 1)``: folds of :func:`pitch_class_fold`
    stacked) and scaled to a maximum of 1 over all ``P``, so that the gain does not matter and a
    band with little in it stays low (Krumhansl's key-finding reads such a profile; Krumhansl,
    *Cognitive Foundations of Musical Pitch*, 1990). ``wave``: ``(B, T)``; returns ``(B, P)``;
    silence gives zeros."""
    cfg = profile_stft(sample_rate)
    x = _as_batch(wave).float()
    mag = _transform("stft_mag", cfg, x.device)(x)  # (B, F, frames)
    frames = torch.tensor([cfg.num_frames(int(n)) for n in lengths], device=x.device)
    mean, _ = _masked_mean(mag, frames)
    profile = mean @ fold.to(x.device, mag.dtype).T  # (B, P)
    return profile / profile.amax(dim=-1, keepdim=True).clamp(min=1e-6)


def _masked_mean(x: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``(B, C, T)`` over the first ``counts[b]`` steps of each item -> ``(B, C)``, and the
    ``(B, T)`` mask of those steps."""
    valid = (torch.arange(x.shape[-1], device=x.device)[None, :] < counts.to(x.device)[:, None]).to(x.dtype)
    mean = (x * valid[:, None, :]).sum(-1) / valid.sum(-1, keepdim=True).clamp(min=1.0)
    return mean, valid


# The lags of the tempo profile, log-spaced in seconds: from a beat at 300 BPM to a bar of 3/4 at
# 60 BPM, so that it holds the beat period and the bar's (the meter) of the demo's tempi.
TEMPO_LAGS = (0.2, 3.0, 32)


def onset_strength(wave: torch.Tensor, sample_rate: int, hop_seconds: float = 0.01) -> torch.Tensor:
    """Spectral-flux novelty of each wave: the half-wave rectified increase over one frame of the
    log-compressed magnitude ``log(1 + 100 |X|)``, summed over frequency (Müller, *Fundamentals of
    Music Processing*, 2015, Sec. 6.1.2), one value per ``hop_seconds`` frame; ``(B, frames - 1)``
    for ``(B, T)`` waves."""
    hop = max(1, round(sample_rate * hop_seconds))
    n_fft = 2 ** round(math.log2(sample_rate * 0.032))  # a 32 ms window
    cfg = SpectrogramConfig(sample_rate=sample_rate, kind="stft", n_fft=n_fft, win_length=n_fft,
                            hop_length=hop)
    x = _as_batch(wave).float()
    mag = torch.log1p(100.0 * _transform("stft_mag", cfg, x.device)(x))  # (B, F, frames)
    return torch.relu(mag[..., 1:] - mag[..., :-1]).sum(1)


def tempo_profile(wave: torch.Tensor, lengths: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Autocorrelation of each wave's :func:`onset_strength` (its mean removed, over the frames of
    its ``lengths[b]`` samples only), each lag divided by the number of frame pairs it sums and by
    the lag-0 value, then its maximum over each of the ``TEMPO_LAGS`` log-spaced bins (a bin
    spans a ratio of about 1.09): the beat's period and the bar's stand out (the autocorrelation
    tempogram; Müller 2015, Sec. 6.2.3). ``(B, T)`` waves -> ``(B, TEMPO_LAGS[2])`` in [-1, 1];
    a bin that an item is too short to reach is 0, and silence gives zeros."""
    hop_seconds = 0.01
    env = onset_strength(wave, sample_rate, hop_seconds)  # (B, N)
    n_valid = torch.tensor([max(0, int(n) // round(sample_rate * hop_seconds)) for n in lengths],
                           device=env.device).clamp(max=env.shape[1])
    steps = torch.arange(env.shape[1], device=env.device)
    mean, valid = _masked_mean(env[:, None, :], n_valid)
    env = (env - mean) * valid
    size = 2 ** math.ceil(math.log2(2 * env.shape[1] + 1))
    spec = torch.fft.rfft(env, n=size)
    ac = torch.fft.irfft(spec * spec.conj(), n=size)[:, :env.shape[1]]  # (B, N): sum over pairs
    pairs = (n_valid[:, None] - steps[None, :]).to(env.dtype)
    ac = ac / pairs.clamp(min=1.0)
    ac = torch.where(pairs > 0, ac / ac[:, :1].clamp(min=1e-8), torch.full_like(ac, -1.0))
    lo, hi, count = TEMPO_LAGS
    ratio = (hi / lo) ** (1.0 / (count - 1))
    centres = lo * ratio ** torch.arange(count, dtype=torch.float64)
    edges = torch.stack([centres / ratio ** 0.5, centres * ratio ** 0.5], 1) / hop_seconds
    lag = steps.to(torch.float64)
    bins = ((lag[None, :] >= edges[:, :1]) & (lag[None, :] < edges[:, 1:])).to(env.device)  # (count, N)
    out = torch.where(bins[None], ac[:, None, :], torch.full_like(ac[:, None, :], -1.0)).amax(-1)
    reached = (edges[:, 1].to(env.device)[None, :] <= n_valid[:, None].to(torch.float64)).to(out.dtype)
    return out.clamp(min=-1.0) * reached


def fixed_windows(num_samples: int, window: int, overlap: float = 0.5) -> list[tuple[int, int]]:
    """Deterministic ``(start, end)`` sample ranges that cover a signal with a given overlap.

    Windows start every ``hop = round(window * (1 - overlap))`` samples; the last one is aligned to
    the end of the signal so that every window is full length and nothing is left uncovered. A signal
    no longer than one window gives the single range ``(0, num_samples)``.

    Args:
        num_samples: length of the signal (>= 1).
        window: window length in samples (>= 1).
        overlap: fraction of a window shared with the next one, in ``[0, 1)``.

    Example::

        fixed_windows(10, 4, 0.5)  # [(0, 4), (2, 6), (4, 8), (6, 10)]
    """
    if num_samples < 1 or window < 1:
        raise ValueError(f"fixed_windows needs num_samples >= 1 and window >= 1, got {num_samples}, {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if num_samples <= window:
        return [(0, num_samples)]
    hop = max(1, int(round(window * (1.0 - overlap))))
    last = num_samples - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return [(s, s + window) for s in starts]


def split_windows(
    wave: np.ndarray, window: int, overlap: float = 0.5
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Cut a 1-D wave into the windows of :func:`fixed_windows`, zero-padding a short wave to ``window``.

    Returns:
        ``(windows, ranges)``: ``(N, window)`` float32 and the N ``(start, end)`` sample ranges.

    Example::

        crops, ranges = split_windows(wave, window=3 * 16000)
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    ranges = fixed_windows(len(wave), window, overlap)
    out = np.zeros((len(ranges), window), dtype=np.float32)
    for i, (s, e) in enumerate(ranges):
        out[i, : e - s] = wave[s:e]
    return out, ranges


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Whole samples in ``seconds`` at ``sample_rate`` (rounded)."""
    return int(math.floor(seconds * sample_rate + 0.5))


# --------------------------------------------------------------------------- helpers


def _as_batch(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(wave)
    if not torch.is_floating_point(x):
        raise TypeError(f"waves must be floating point, got {x.dtype}")
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"waves must be (T,) or (B, T), got shape {tuple(x.shape)}")
    return x.float()


_CACHE: dict[tuple, torch.nn.Module] = {}
_FILTERBANKS: dict[tuple, np.ndarray] = {}
_FB_TENSORS: dict[tuple, torch.Tensor] = {}


def _filterbank_tensor(cfg: SpectrogramConfig, device: torch.device) -> torch.Tensor:
    key = (tuple(dataclasses.astuple(cfg)), str(device))
    fb = _FB_TENSORS.get(key)
    if fb is None:
        fb = torch.from_numpy(logfreq_filterbank(cfg)).to(device)
        if len(_FB_TENSORS) > 32:
            _FB_TENSORS.clear()
        _FB_TENSORS[key] = fb
    return fb


def _cqt_bins(cfg: SpectrogramConfig) -> int:
    f_max = float(cfg.f_max or cfg.sample_rate / 2)
    return int(math.floor(cfg.bins_per_octave * math.log2(f_max / cfg.f_min))) + 1


def _transform(which: str, cfg: SpectrogramConfig, device: torch.device) -> torch.nn.Module:
    """Build (once per config and device) the torchaudio module; the mel filterbank is not free."""
    key = (which, tuple(dataclasses.astuple(cfg)), str(device))
    module = _CACHE.get(key)
    if module is None:
        import torchaudio.transforms as T

        if which == "mel":
            module = T.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
                hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
                power=2.0, center=cfg.center, window_fn=torch.hann_window,
            )
        elif which == "stft_mag":  # zero padding when centring: frames do not depend on what follows
            module = T.Spectrogram(
                n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                power=1.0, center=cfg.center, pad_mode="constant", window_fn=torch.hann_window,
            )
        elif which == "cqt":
            try:
                from nnAudio.features import CQT1992v2
            except ImportError as exc:
                raise ConfigError("SpectrogramConfig kind 'cqt' needs the nnAudio package") from exc
            module = CQT1992v2(
                sr=cfg.sample_rate, hop_length=cfg.hop_length, fmin=cfg.f_min, n_bins=_cqt_bins(cfg),
                bins_per_octave=int(cfg.bins_per_octave), center=cfg.center, pad_mode="constant",
                output_format="Magnitude", verbose=False,
            )
        else:
            module = T.Spectrogram(
                n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                power=None, center=cfg.center, window_fn=torch.hann_window,
            )
        module = module.to(device)
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = module
    return module
