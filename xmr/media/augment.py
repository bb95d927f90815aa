"""Training-time augmentation for real input: recordings through a microphone, photos of a score.

Audio (a mono float32 waveform) goes through pedalboard (Rubber Band time-stretch, gain, a peaking
EQ, Freeverb room reverb, LAME MP3 and GSM 06.10 codecs) and audiomentations (coloured noise at a
random SNR, Butterworth high-/low-pass band-limiting such as the 300–3400 Hz telephone band), in
the order of a real recording chain: tempo, gain, EQ, room, noise, band-limit, codec. Images (a
``(C, H, W)`` float tensor in ``[0, 1]``) go through kornia: perspective, small rotation (both on
the ink, so the uncovered border stays paper-white), uneven lighting (a linear gradient from a
corner) and a plasma shadow, Gaussian blur, Gaussian noise and JPEG. Each transform has its own
probability (``p_*``) and parameter ranges in :class:`AudioAugmentConfig` / :class:`ImageAugmentConfig`.

Determinism: every call takes a ``torch.Generator`` (the training data seeds one per
``(seed, step, item)``, see :mod:`xmr.train.data`); every decision and parameter is drawn from it
in a fixed order (a transform that is off still consumes its draws, so changing one probability
leaves the other transforms' draws as they were), and the libraries' own global random states
(Python's ``random``, NumPy's legacy ``np.random``, torch's CPU generator) are seeded from it for
the duration of one call and restored afterwards. So the same key gives identical arrays whatever
the number of processes, and nothing outside the call sees a changed random state.

Tempo and aligned spans: the time-stretch changes the length of the audio, so it is applied to the
cut audio (after the span cut: the whole span is stretched and its bars stay aligned with the
image's). :meth:`Augmenter.audio` with ``fit="keep"`` lowers the stretch so that the result fits
``max_samples`` (nothing of the span is lost); with ``fit="trim"`` (a crop of a whole excerpt)
the result is cut to ``max_samples`` — cut the crop :meth:`Augmenter.source_samples` long so that
a faster tempo still fills the window.

Example::

    aug = build_augment("real")          # or {"name": "real", "audio": {"p_noise": 1.0}, "image": None}
    wave = aug.audio(wave, 16000, gen=torch.Generator().manual_seed(0), max_samples=128000)
    img = aug.image(img, gen=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmr.config import strict_from_dict
from xmr.errors import ConfigError

CODECS = ("mp3", "gsm")


def _pair(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"augment: {name} must be a pair [low, high], got {value!r}") from err
    if not low <= a <= b <= high:
        raise ConfigError(f"augment: {name} must satisfy {low} <= low <= high <= {high}, got {[a, b]}")
    return a, b


def _check_probs(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        if f.name.startswith("p_"):
            p = getattr(cfg, f.name)
            if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"augment: {f.name} must be in [0, 1], got {p!r}")
            setattr(cfg, f.name, float(p))


@dataclass
class AudioAugmentConfig:
    """Probabilities and ranges of the audio transforms (all ranges ``[low, high]``, drawn uniformly).

    Args:
        p_tempo / tempo: time-stretch by a tempo factor (1.1 = 10 % faster), pitch kept (Rubber Band).
        p_gain / gain_db: gain in dB.
        p_eq / eq_hz / eq_gain_db / eq_q: one peaking EQ band (centre drawn log-uniformly).
        p_reverb / reverb_room / reverb_damping / reverb_wet: Freeverb room size, damping, wet level
            (the dry level is ``1 - wet``).
        p_noise / noise_snr_db / noise_decay_db: additive coloured noise at an SNR, spectral decay in
            dB per octave (0 white, -3 pink, -6 brown, +3 blue).
        p_band / band_low_hz / band_high_hz / band_rolloff_db: a Butterworth high-pass at
            ``band_low_hz`` and low-pass at ``band_high_hz`` (the telephone band is 300–3400 Hz);
            rolloff in dB per octave, a multiple of 6, drawn from the range.
        p_codec / codecs / mp3_vbr_quality: a lossy codec, one of ``codecs`` ("mp3": LAME VBR at a
            quality 0 (best)..9.999; "gsm": GSM 06.10 full rate at 8 kHz).
    """

    p_tempo: float = 0.5
    tempo: tuple[float, float] = (0.9, 1.1)
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-9.0, 3.0)
    p_eq: float = 0.3
    eq_hz: tuple[float, float] = (150.0, 5000.0)
    eq_gain_db: tuple[float, float] = (-12.0, 12.0)
    eq_q: tuple[float, float] = (0.5, 2.0)
    p_reverb: float = 0.4
    reverb_room: tuple[float, float] = (0.1, 0.9)
    reverb_damping: tuple[float, float] = (0.2, 0.8)
    reverb_wet: tuple[float, float] = (0.1, 0.5)
    p_noise: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    noise_decay_db: tuple[float, float] = (-6.0, 3.0)
    p_band: float = 0.3
    band_low_hz: tuple[float, float] = (150.0, 500.0)
    band_high_hz: tuple[float, float] = (2500.0, 5000.0)
    band_rolloff_db: tuple[float, float] = (24.0, 48.0)
    p_codec: float = 0.3
    codecs: tuple[str, ...] = CODECS
    mp3_vbr_quality: tuple[float, float] = (4.0, 9.5)

    def __post_init__(self) -> None:
        _check_probs(self)
        self.tempo = _pair(self.tempo, "audio.tempo", low=0.25, high=4.0)
        self.gain_db = _pair(self.gain_db, "audio.gain_db", low=-60.0, high=24.0)
        self.eq_hz = _pair(self.eq_hz, "audio.eq_hz", low=20.0, high=20000.0)
        self.eq_gain_db = _pair(self.eq_gain_db, "audio.eq_gain_db", low=-48.0, high=48.0)
        self.eq_q = _pair(self.eq_q, "audio.eq_q", low=0.05, high=20.0)
        self.reverb_room = _pair(self.reverb_room, "audio.reverb_room", low=0.0, high=1.0)
        self.reverb_damping = _pair(self.reverb_damping, "audio.reverb_damping", low=0.0, high=1.0)
        self.reverb_wet = _pair(self.reverb_wet, "audio.reverb_wet", low=0.0, high=1.0)
        self.noise_snr_db = _pair(self.noise_snr_db, "audio.noise_snr_db", low=-20.0, high=100.0)
        self.noise_decay_db = _pair(self.noise_decay_db, "audio.noise_decay_db", low=-12.0, high=12.0)
        self.band_low_hz = _pair(self.band_low_hz, "audio.band_low_hz", low=1.0, high=20000.0)
        self.band_high_hz = _pair(self.band_high_hz, "audio.band_high_hz", low=1.0, high=20000.0)
        self.band_rolloff_db = _pair(self.band_rolloff_db, "audio.band_rolloff_db", low=6.0, high=96.0)
        self.mp3_vbr_quality = _pair(self.mp3_vbr_quality, "audio.mp3_vbr_quality", low=0.0, high=9.999)
        if self.band_low_hz[1] >= self.band_high_hz[0]:
            raise ConfigError("augment: audio.band_low_hz must lie below audio.band_high_hz")
        if isinstance(self.codecs, str):
            self.codecs = (self.codecs,)
        self.codecs = tuple(str(c) for c in self.codecs)
        bad = [c for c in self.codecs if c not in CODECS]
        if bad or not self.codecs:
            raise ConfigError(f"augment: audio.codecs must be one or more of {', '.join(CODECS)}, got "
                              f"{list(self.codecs)}")


@dataclass
class ImageAugmentConfig:
    """Probabilities and ranges of the image transforms (a phone photo of a printed score).

    Args:
        p_perspective / perspective: kornia's distortion scale (0 none, 1 corners up to half the size).
        p_rotate / rotate_degrees: rotation in ±degrees.
        p_light / light_gain: a linear brightness gradient from a random corner, its gain.
        p_shadow / shadow_intensity: a plasma-fractal shadow, its darkening (0 none, 1 black).
        p_blur / blur_sigma: Gaussian blur, sigma in pixels of the model's image.
        p_noise / noise_std: additive Gaussian noise, standard deviation in [0, 1] units.
        p_jpeg / jpeg_quality: JPEG compression (kornia's differentiable JPEG), quality 1..100.
    """

    p_perspective: float = 0.5
    perspective: tuple[float, float] = (0.05, 0.25)
    p_rotate: float = 0.5
    rotate_degrees: float = 3.0
    p_light: float = 0.4
    light_gain: tuple[float, float] = (0.05, 0.3)
    p_shadow: float = 0.3
    shadow_intensity: tuple[float, float] = (0.1, 0.5)
    p_blur: float = 0.4
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_noise: float = 0.3
    noise_std: tuple[float, float] = (0.01, 0.06)
    p_jpeg: float = 0.3
    jpeg_quality: tuple[float, float] = (30.0, 90.0)

    def __post_init__(self) -> None:
        _check_probs(self)
        self.perspective = _pair(self.perspective, "image.perspective", low=0.0, high=1.0)
        if not 0.0 <= float(self.rotate_degrees) <= 180.0:
            raise ConfigError(f"augment: image.rotate_degrees must be in [0, 180], got {self.rotate_degrees}")
        self.rotate_degrees = float(self.rotate_degrees)
        self.light_gain = _pair(self.light_gain, "image.light_gain", low=0.0, high=1.0)
        self.shadow_intensity = _pair(self.shadow_intensity, "image.shadow_intensity", low=0.0, high=1.0)
        self.blur_sigma = _pair(self.blur_sigma, "image.blur_sigma", low=0.01, high=10.0)
        self.noise_std = _pair(self.noise_std, "image.noise_std", low=0.0, high=1.0)
        self.jpeg_quality = _pair(self.jpeg_quality, "image.jpeg_quality", low=1.0, high=100.0)


@dataclass
class AugmentConfig:
    """An augmentation preset by ``name`` with overrides per modality (``None``: that modality is
    not augmented). Built by :func:`build_augment`."""

    name: str = "real"
    audio: dict[str, Any] | None = field(default_factory=dict)
    image: dict[str, Any] | None = field(default_factory=dict)


# Presets by name: per modality the overrides of the dataclass defaults (None: off).
PRESETS: dict[str, dict[str, dict[str, Any] | None]] = {
    "real": {"audio": {}, "image": {}},          # the defaults above: recordings and phone photos
    "audio": {"audio": {}, "image": None},
    "image": {"audio": None, "image": {}},
}


class Augmenter:
    """Seeded audio and image augmentation (see the module docstring).

    Attributes:
        audio_cfg / image_cfg: the configs, ``None`` for a modality that is not augmented.
    """

    def __init__(self, audio: AudioAugmentConfig | None = None, image: ImageAugmentConfig | None = None):
        self.audio_cfg = audio
        self.image_cfg = image
        self._kornia: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Augmenter(audio={self.audio_cfg!r}, image={self.image_cfg!r})"

    def without(self, *modalities: str) -> Augmenter | None:
        """The same augmenter with ``modalities`` off (None when nothing is left)."""
        audio = None if "audio" in modalities else self.audio_cfg
        image = None if "image" in modalities else self.image_cfg
        return None if audio is None and image is None else Augmenter(audio, image)

    # ------------------------------------------------------------------ audio
    def source_samples(self, samples: int) -> int:
        """How long a crop of a whole excerpt should be so that, after the fastest tempo, it still
        fills ``samples``."""
        cfg = self.audio_cfg
        if cfg is None or cfg.p_tempo == 0.0:
            return samples
        return int(math.ceil(samples * max(1.0, cfg.tempo[1])))

    def audio_plan(self, gen) -> dict[str, Any]:
        """The transforms drawn for one call: name -> parameters, in the order they are applied
        (transforms that are off are absent), plus ``"_seeds"`` for the libraries' own draws."""
        cfg = self.audio_cfg
        if cfg is None:
            return {"_seeds": []}
        rng = _numpy_rng(gen)
        u = rng.random(22)  # a fixed number of draws per transform, whatever is on
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=2)]
        plan: dict[str, Any] = {}
        if u[0] < cfg.p_tempo:
            plan["tempo"] = _lerp(cfg.tempo, u[1])
        if u[2] < cfg.p_gain:
            plan["gain"] = _lerp(cfg.gain_db, u[3])
        if u[4] < cfg.p_eq:
            plan["eq"] = (_loglerp(cfg.eq_hz, u[5]), _lerp(cfg.eq_gain_db, u[6]), _lerp(cfg.eq_q, u[7]))
        if u[8] < cfg.p_reverb:
            plan["reverb"] = (_lerp(cfg.reverb_room, u[9]), _lerp(cfg.reverb_damping, u[10]),
                              _lerp(cfg.reverb_wet, u[11]))
        if u[12] < cfg.p_noise:
            plan["noise"] = (_lerp(cfg.noise_snr_db, u[13]), _lerp(cfg.noise_decay_db, u[14]))
        if u[15] < cfg.p_band:
            steps = [r for r in range(6, 97, 6) if cfg.band_rolloff_db[0] <= r <= cfg.band_rolloff_db[1]]
            steps = steps or [max(6, int(round(cfg.band_rolloff_db[0] / 6.0)) * 6)]
            plan["band"] = (_loglerp(cfg.band_low_hz, u[16]), _loglerp(cfg.band_high_hz, u[17]),
                            steps[min(int(u[18] * len(steps)), len(steps) - 1)])
        if u[19] < cfg.p_codec:
            codec = cfg.codecs[min(int(u[20] * len(cfg.codecs)), len(cfg.codecs) - 1)]
            plan["codec"] = (codec, _lerp(cfg.mp3_vbr_quality, u[21]))
        plan["_seeds"] = seeds
        return plan

    def audio(self, wave: np.ndarray, sample_rate: int, *, gen, max_samples: int | None = None,
              fit: str = "keep") -> np.ndarray:
        """Augment a mono waveform (float32 in [-1, 1]); returns float32, clipped to [-1, 1].

        Args:
            wave: (T,) waveform.
            sample_rate: its rate.
            gen: a ``torch.Generator`` (one per (seed, step, item)).
            max_samples: the longest output; None: no limit.
            fit: "keep": a slower tempo is limited so that the stretched audio fits ``max_samples``
                (a span of bars stays whole); "trim": the output is cut to ``max_samples``.
        """
        if fit not in ("keep", "trim"):
            raise ValueError(f"fit must be keep or trim, got {fit!r}")
        plan = self.audio_plan(gen)
        x = np.ascontiguousarray(np.asarray(wave, dtype=np.float32).reshape(-1))
        if self.audio_cfg is None or len(x) == 0 or len(plan) == 1:
            return x[:max_samples] if max_samples is not None else x
        import pedalboard

        sr = int(sample_rate)
        if "tempo" in plan:
            tempo = plan["tempo"]
            if fit == "keep" and max_samples is not None and len(x) / tempo > max_samples:
                tempo = len(x) / max_samples
            if abs(tempo - 1.0) > 1e-6:
                # Rubber Band's faster mode: about 40 ms for 8 s at 16 kHz, against 200-300 ms in its
                # high-quality mode, indistinguishable through a 64 ms spectrogram hop
                x = pedalboard.time_stretch(x[None], sr, stretch_factor=float(tempo), high_quality=False)[0]
        effects = []
        if "gain" in plan:
            effects.append(pedalboard.Gain(gain_db=plan["gain"]))
        if "eq" in plan:
            hz, gain, q = plan["eq"]
            effects.append(pedalboard.PeakFilter(cutoff_frequency_hz=min(hz, 0.45 * sr), gain_db=gain, q=q))
        if "reverb" in plan:
            room, damping, wet = plan["reverb"]
            effects.append(pedalboard.Reverb(room_size=room, damping=damping, wet_level=wet,
                                             dry_level=1.0 - wet, width=0.0))
        if effects:
            x = pedalboard.Pedalboard(effects)(x[None], sr)[0]
        with _seeded_globals(plan["_seeds"][0]):
            x = self._audiomentations(x, sr, plan)
        if "codec" in plan:
            codec, quality = plan["codec"]
            effect = (pedalboard.MP3Compressor(vbr_quality=quality) if codec == "mp3"
                      else pedalboard.GSMFullRateCompressor())
            n = len(x)
            x = effect(x[None], sr)[0]
            x = x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
        if max_samples is not None:
            x = x[:max_samples]
        return np.clip(np.nan_to_num(x), -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _audiomentations(x: np.ndarray, sr: int, plan: dict[str, Any]) -> np.ndarray:
        if "noise" not in plan and "band" not in plan:
            return x
        import audiomentations as am

        if "noise" in plan:
            snr, decay = plan["noise"]
            x = am.AddColorNoise(min_snr_db=snr, max_snr_db=snr, min_f_decay=decay, max_f_decay=decay,
                                 p=1.0)(x, sr)
        if "band" in plan:
            lo, hi, rolloff = plan["band"]
            hi = min(hi, 0.45 * sr)
            x = am.HighPassFilter(min_cutoff_freq=lo, max_cutoff_freq=lo, min_rolloff=rolloff,
                                  max_rolloff=rolloff, p=1.0)(x, sr)
            x = am.LowPassFilter(min_cutoff_freq=hi, max_cutoff_freq=hi, min_rolloff=rolloff,
                                 max_rolloff=rolloff, p=1.0)(x, sr)
        return np.asarray(x, dtype=np.float32)

    # ------------------------------------------------------------------ image
    def image_plan(self, gen) -> dict[str, Any]:
        """The image transforms drawn for one call (as :meth:`audio_plan`); ``"_seeds"`` seed
        kornia's own draws, one per transform."""
        cfg = self.image_cfg
        if cfg is None:
            return {"_seeds": []}
        rng = _numpy_rng(gen)
        u = rng.random(11)
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=7)]
        plan: dict[str, Any] = {}
        if u[0] < cfg.p_perspective:
            plan["perspective"] = _lerp(cfg.perspective, u[1])
        if u[2] < cfg.p_rotate:
            plan["rotate"] = cfg.rotate_degrees
        if u[3] < cfg.p_light:
            plan["light"] = cfg.light_gain
        if u[4] < cfg.p_shadow:
            plan["shadow"] = cfg.shadow_intensity
        if u[5] < cfg.p_blur:
            plan["blur"] = _lerp(cfg.blur_sigma, u[6])
        if u[7] < cfg.p_noise:
            plan["noise"] = _lerp(cfg.noise_std, u[8])
        if u[9] < cfg.p_jpeg:
            plan["jpeg"] = _lerp(cfg.jpeg_quality, u[10])
        plan["_seeds"] = seeds
        return plan

    def image(self, img, *, gen):
        """Augment one ``(C, H, W)`` float image in [0, 1] (C = 1 or 3); returns the same shape."""
        import torch

        plan = self.image_plan(gen)
        if self.image_cfg is None or len(plan) == 1:
            return img
        import kornia.augmentation as K

        seeds = plan["_seeds"]
        x = img[None].float()
        channels = x.shape[1]

        def run(module, batch, seed):
            torch.manual_seed(seed)
            return module(batch)

        with torch.random.fork_rng(devices=[]):
            # geometry on the ink (1 - x): the border the warp uncovers is 0 there, i.e. white paper
            if "perspective" in plan:
                x = 1.0 - run(K.RandomPerspective(distortion_scale=plan["perspective"], p=1.0,
                                                  sampling_method="area_preserving"), 1.0 - x, seeds[0])
            if "rotate" in plan:
                x = 1.0 - run(K.RandomRotation(degrees=plan["rotate"], p=1.0), 1.0 - x, seeds[1])
            if "light" in plan:
                x = run(K.RandomLinearCornerIllumination(gain=plan["light"], p=1.0), x, seeds[2])
            if "shadow" in plan:
                lo, hi = plan["shadow"]
                x = run(K.RandomPlasmaShadow(shade_intensity=(-hi, -lo), shade_quantity=(0.3, 1.0), p=1.0),
                        x, seeds[3])
            if "blur" in plan:
                sigma = plan["blur"]
                k = 2 * int(math.ceil(3 * sigma)) + 1
                x = run(K.RandomGaussianBlur(kernel_size=k, sigma=(sigma, sigma), p=1.0), x, seeds[4])
            if "noise" in plan:
                x = run(K.RandomGaussianNoise(std=plan["noise"], p=1.0), x, seeds[5])
            x = x.clamp(0.0, 1.0)
            if "jpeg" in plan:
                q = plan["jpeg"]
                rgb = x.expand(-1, 3, -1, -1) if channels == 1 else x
                rgb = _jpeg(K, rgb, q, seeds[6], run)
                x = rgb.mean(dim=1, keepdim=True) if channels == 1 else rgb
        return x.clamp(0.0, 1.0)[0].to(img.dtype)


def _jpeg(K, rgb, quality: float, seed: int, run):
    """kornia's JPEG on an image whose sides kornia's codec needs to be multiples of 16: pad with
    the edge, compress, crop back."""
    import torch

    h, w = rgb.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    padded = torch.nn.functional.pad(rgb, (0, pw, 0, ph), mode="replicate") if ph or pw else rgb
    out = run(K.RandomJPEG(jpeg_quality=(quality, quality), p=1.0), padded, seed)
    return out[..., :h, :w]


def _numpy_rng(gen) -> np.random.Generator:
    import torch

    seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())
    return np.random.default_rng(seed)


def _lerp(pair: tuple[float, float], u: float) -> float:
    return float(pair[0] + (pair[1] - pair[0]) * float(u))


def _loglerp(pair: tuple[float, float], u: float) -> float:
    return float(math.exp(math.log(pair[0]) + (math.log(pair[1]) - math.log(pair[0])) * float(u)))


@contextlib.contextmanager
def _seeded_globals(seed: int):
    """Seed Python's ``random`` and NumPy's legacy global state (audiomentations draws from them)
    for the block, then restore both."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def build_augment(spec: str | Mapping[str, Any] | AugmentConfig | None) -> Augmenter | None:
    """An :class:`Augmenter` from a preset name (``"real"``, ``"audio"``, ``"image"``; ``"none"``
    or None: no augmentation) or a mapping ``{name, audio, image}`` whose ``audio``/``image``
    override the preset's fields (``null`` turns that modality off). Unknown keys are errors.

    Example:
        >>> aug = build_augment({"name": "real", "audio": {"p_noise": 1.0, "noise_snr_db": [10, 10]}})
        >>> aug.audio_cfg.p_noise, aug.image_cfg is not None
        (1.0, True)
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none", "off")):
        return None
    if isinstance(spec, str):
        cfg = AugmentConfig(name=spec)
    elif isinstance(spec, AugmentConfig):
        cfg = spec
    elif isinstance(spec, Mapping):
        raw = dict(spec)
        for key in ("audio", "image"):  # a modality the mapping does not name keeps the preset's
            raw.setdefault(key, {})
        cfg = strict_from_dict(AugmentConfig, raw, what="augment")
    else:
        raise ConfigError(f"augment must be a preset name or a mapping, got {type(spec).__name__}")
    if cfg.name not in PRESETS:
        raise ConfigError(f"unknown augment preset {cfg.name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[cfg.name]
    parts: dict[str, Any] = {}
    for key, cls in (("audio", AudioAugmentConfig), ("image", ImageAugmentConfig)):
        base, over = preset[key], getattr(cfg, key)
        if base is None or over is None:
            parts[key] = None
            continue
        if not isinstance(over, Mapping):
            raise ConfigError(f"augment.{key} must be a mapping or null, got {over!r}")
        parts[key] = strict_from_dict(cls, {**base, **dict(over)}, what=f"augment.{key}")
    if parts["audio"] is None and parts["image"] is None:
        return None
    return Augmenter(parts["audio"], parts["image"])
