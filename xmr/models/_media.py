"""The preprocessing the models use, taken from :mod:`xmr.media`.

Kept in one place so that the models package names each media function once. While
``xmr.media`` is not importable (a partial checkout), small equivalents with the same
signatures are used so that models can still be built and tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

try:  # pragma: no cover - exercised by whichever side is present
    from xmr.media.audio import load_audio
    from xmr.media.features import SpectrogramConfig, compute_features
    from xmr.media.image import ImageConfig, load_image, prepare_image
    from xmr.media.text import normalize_text
except ImportError:  # pragma: no cover
    import numpy as np

    from xmr.errors import InputError

    def _from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "size" else v) for k, v in data.items() if k in names})

    @dataclass
    class SpectrogramConfig:  # type: ignore[no-redef]
        sample_rate: int = 16000
        kind: str = "logmel"
        n_fft: int = 1024
        win_length: int = 1024
        hop_length: int = 320
        n_mels: int = 64
        f_min: float = 0.0
        f_max: float | None = None

        def to_dict(self) -> dict[str, Any]:
            return asdict(self)

        @classmethod
        def from_dict(cls, data: dict[str, Any]) -> SpectrogramConfig:
            return _from_dict(cls, data)

    @dataclass
    class ImageConfig:  # type: ignore[no-redef]
        size: tuple[int, int] = (128, 256)
        mode: str = "L"
        resize: str = "pad"
        max_pixels: int = 50_000_000

        def to_dict(self) -> dict[str, Any]:
            d = asdict(self)
            d["size"] = list(self.size)
            return d

        @classmethod
        def from_dict(cls, data: dict[str, Any]) -> ImageConfig:
            return _from_dict(cls, data)

    def compute_features(wave, cfg):  # type: ignore[no-redef]
        import torch
        import torchaudio

        if wave.dim() == 1:
            wave = wave[None]
        window = torch.hann_window(cfg.win_length, device=wave.device)
        spec = torch.stft(wave, cfg.n_fft, cfg.hop_length, cfg.win_length, window, return_complex=True)
        if cfg.kind == "stft":
            return torch.stack([spec.real, spec.imag], dim=1)
        fb = torchaudio.functional.melscale_fbanks(
            cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max or cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate
        ).to(wave.device)
        mel = (spec.abs() ** 2).transpose(1, 2) @ fb  # (B, frames, n_mels)
        return torch.log(mel + 1e-6).transpose(1, 2)[:, None]

    def normalize_text(text, *, max_chars=1000):  # type: ignore[no-redef]
        from types import SimpleNamespace

        if not isinstance(text, str) or not text.strip():
            raise InputError("empty text")
        t = " ".join(text.split())
        return SimpleNamespace(text=t[:max_chars], truncated=len(t) > max_chars)

    def load_audio(src, *, sample_rate=16000, max_seconds=600.0):  # type: ignore[no-redef]
        import soundfile as sf
        import torch
        import torchaudio

        try:
            data, sr = sf.read(str(src), dtype="float32", always_2d=True)
        except Exception as exc:
            raise InputError(f"cannot decode audio {src}: {exc}") from exc
        wave = torch.from_numpy(data.mean(axis=1))
        if sr != sample_rate:
            wave = torchaudio.functional.resample(wave, sr, sample_rate)
        return wave.numpy()[: int(max_seconds * sample_rate)].astype(np.float32)

    def load_image(src, *, max_pixels=50_000_000):  # type: ignore[no-redef]
        from PIL import Image

        if isinstance(src, Image.Image):
            return src
        try:
            return Image.open(src)
        except Exception as exc:
            raise InputError(f"cannot decode image {src}: {exc}") from exc

    def prepare_image(img, cfg):  # type: ignore[no-redef]
        import torch

        h, w = cfg.size
        img = img.convert(cfg.mode).resize((w, h))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[None]
        else:
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))


__all__ = [
    "ImageConfig",
    "SpectrogramConfig",
    "compute_features",
    "load_audio",
    "load_image",
    "normalize_text",
    "prepare_image",
]
