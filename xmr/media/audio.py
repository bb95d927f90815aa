"""Audio decoding and validation: untrusted audio in, mono float32 at the model's rate out.

Files are decoded with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3); resampling uses
torchaudio. Everything a user can get wrong raises :class:`xmr.errors.InputError` with a one-line
message: an empty or undecodable input, an unsupported type or container, audio longer than the cap
(checked from the header before anything is decoded), audio shorter than a minimum (when one is
given), and audio that is silent. A file that holds less audio than its header promises (a cut
upload) is refused when what it holds is below the minimum, and otherwise decoded with a note for
the user (``notes``). Messages name a file by its own name and keep the decoder's whole reason.

Example::

    from xmr.media.audio import load_audio
    wave = load_audio("clip.mp3", sample_rate=16000)  # (T,) float32, mono, 16 kHz
    wave = load_audio((44100, int16_stereo_array))    # what gr.Audio(type="numpy") hands over
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmr.errors import InputError
from xmr.media._common import decoder_reason, describe, one_line, open_source

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_MAX_SECONDS = 600.0
# Peak amplitude (full scale = 1.0) at or below which audio counts as silent: about -100 dBFS,
# below one step of 16-bit audio, so any real recording passes and digital silence does not.
DEFAULT_SILENCE_THRESHOLD = 1e-5
# libsndfile's major-format names that we accept; everything else it could open is refused so that
# the documented set is what actually works.
SUPPORTED_FORMATS = {"WAV": "WAV", "WAVEX": "WAV", "RF64": "WAV", "W64": "WAV", "FLAC": "FLAC",
                     "OGG": "OGG", "MP3": "MP3"}
SUPPORTED_NAMES = "WAV, FLAC, OGG or MP3"
# Gradio hands over (samples, channels); more "channels" than this means the array is (channels, samples).
_MAX_CHANNELS = 32
# A file holding fewer frames than its header promises, by more than this share (or 50 ms), is cut.
_TRUNCATION_TOLERANCE = 0.01


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio input says, without decoding it."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def load_audio(
    src: Any,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    silence_threshold: float = DEFAULT_SILENCE_THRESHOLD,
    min_seconds: float | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Decode, validate, down-mix and resample audio from an untrusted source.

    Args:
        src: a path (``str``/``Path``) to a WAV, FLAC, OGG or MP3 file; the file's bytes
            (``bytes``/``bytearray``/``memoryview``) or a binary file object; or Gradio's
            ``(sample_rate, ndarray)`` with any integer or float dtype, shape ``(T,)`` or
            ``(T, C)`` (``(C, T)`` is recognised when C is small).
        sample_rate: the rate of the returned wave, in Hz.
        max_seconds: longest accepted input in seconds (``None`` for no cap). Files are checked
            from their header before decoding.
        silence_threshold: peak amplitude (full scale 1.0) at or below which the audio is
            refused as silent.
        min_seconds: shortest accepted input in seconds (``None``: any length above zero).
        notes: a list to append what the user should know to (a truncated file that was kept).

    Returns:
        ``(T,)`` float32 mono wave at ``sample_rate`` (channels averaged).

    Raises:
        InputError: empty, undecodable, unsupported, too long, too short, truncated below the
            minimum, silent or non-finite audio.

    Example::

        wave = load_audio("take1.flac", sample_rate=16000, max_seconds=30, min_seconds=1)
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    data, rate = decode_audio(src, max_seconds=max_seconds, min_seconds=min_seconds, notes=notes)  # (T, C)
    name = describe(src) if not isinstance(src, tuple) else "audio"
    peak = float(np.max(np.abs(data)))
    if peak <= silence_threshold:
        raise InputError(f"{name} is silent (peak amplitude {peak:.2g}); record or upload audio with sound")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if float(np.max(np.abs(mono))) <= silence_threshold:
        raise InputError(f"{name} is silent once its channels are mixed to mono (they cancel out)")
    return resample(mono, orig_rate=rate, new_rate=int(sample_rate))


def decode_audio(
    src: Any,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_seconds: float | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, int]:
    """Decode and validate audio at its own rate, keeping the channels.

    Args:
        src: as for :func:`load_audio`.
        max_seconds: longest accepted input in seconds (``None`` for no cap).
        min_seconds: shortest accepted input in seconds (``None``: any length above zero).
        notes: a list to append what the user should know to.

    Returns:
        ``(data, sample_rate)`` with ``data`` float32 of shape ``(T, C)``, ``T > 0``, finite.

    Example::

        data, sr = decode_audio("stereo.wav")  # data.shape == (T, 2)
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    if min_seconds is not None and not min_seconds >= 0:
        raise ValueError(f"min_seconds must be non-negative or None, got {min_seconds!r}")
    if isinstance(src, tuple):
        data, rate = _from_array(src, max_seconds=max_seconds)
        name = "audio"
    else:
        data, rate = _from_file(src, max_seconds=max_seconds, min_seconds=min_seconds, notes=notes)
        name = describe(src)
    if min_seconds is not None and data.shape[0] < min_seconds * rate:
        raise InputError(f"{name} is {_duration(data.shape[0] / rate)} long, too short to search with; "
                         f"use a clip of at least {min_seconds:g} s")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name} contains NaN or infinite samples")
    return np.ascontiguousarray(data, dtype=np.float32), rate


def probe_audio(src: Any) -> AudioInfo:
    """Read an audio file's header (rate, channels, length, container) without decoding it.

    Args:
        src: a path, the file's bytes, or a binary file object.

    Example::

        if probe_audio("long.flac").duration > 60: ...
    """
    with _open_soundfile(src) as f:
        return AudioInfo(int(f.samplerate), int(f.channels), int(f.frames), str(f.format))


def resample(wave: np.ndarray, *, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a 1-D (or ``(C, T)``) float wave with torchaudio's band-limited sinc interpolation.

    Example::

        y = resample(x, orig_rate=44100, new_rate=16000)
    """
    if orig_rate == new_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch
    import torchaudio.functional as AF

    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    out = AF.resample(tensor, orig_freq=int(orig_rate), new_freq=int(new_rate))
    return out.numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------- files


class _Opened:
    """Context manager around a soundfile handle that turns libsndfile errors into InputError."""

    def __init__(self, src: Any):
        self.src = src
        self.file = None
        self.declared_frames: int | None = None  # what a WAV header's data chunk promises

    def __enter__(self):
        import soundfile as sf

        name = describe(self.src)
        obj = open_source(
            self.src, "audio", accepts="a file path, the file's bytes or (sample_rate, array)", seekable=True
        )
        if isinstance(obj, str):
            # Opened here, not by libsndfile from the path: on a path it reports every unreadable
            # file as "does not exist or is not a regular file"; on a file object it says why.
            obj = self.file = open(obj, "rb")  # noqa: SIM115 - closed in __exit__
        self.declared_frames = _declared_wav_frames(obj)
        try:
            self.handle = sf.SoundFile(obj)
        except Exception as err:  # libsndfile reports every unreadable input as an error here
            self._close_file()
            raise InputError(
                f"cannot decode {name} as audio ({decoder_reason(err, self.src)}); use {SUPPORTED_NAMES}"
            ) from None
        return self.handle

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __exit__(self, *exc):
        self.handle.close()
        self._close_file()
        return False


def _declared_wav_frames(f: Any) -> int | None:
    """The frame count a RIFF/WAVE header's ``data`` chunk declares (None: not a WAV, or unknown)."""
    pos = f.tell()
    try:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        block = 0
        for _ in range(64):  # a WAV has a handful of chunks before its data
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
            if cid == b"data":
                # 0 and 0xFFFFFFFF: a stream whose writer did not know the length
                return size // block if block and size not in (0, 0xFFFFFFFF) else None
            body = f.read(size + (size & 1)) if cid == b"fmt " else f.seek(size + (size & 1), 1)
            if cid == b"fmt " and len(body) >= 14:
                block = struct.unpack(order + "H", body[12:14])[0]
        return None
    except (OSError, struct.error):
        return None
    finally:
        f.seek(pos)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _open_soundfile(src: Any) -> _Opened:
    return _Opened(src)


def _from_file(
    src: Any, *, max_seconds: float | None, min_seconds: float | None = None, notes: list[str] | None = None
) -> tuple[np.ndarray, int]:
    name = describe(src)
    opened = _open_soundfile(src)
    with opened as f:
        fmt, rate, frames = str(f.format), int(f.samplerate), int(f.frames)
        if fmt not in SUPPORTED_FORMATS:
            raise InputError(f"unsupported audio format {fmt} in {name}; use {SUPPORTED_NAMES}")
        if rate <= 0:
            raise InputError(f"{name} declares an invalid sample rate {rate}")
        limit = None if max_seconds is None else int(math.floor(max_seconds * rate))
        # Refuse from the header: a long file is never decoded into memory.
        if limit is not None and frames > limit:
            raise InputError(_too_long(name, frames / rate, max_seconds))
        if frames == 0 and not opened.declared_frames:
            raise InputError(f"{name} has no audio samples (zero length)")
        try:
            # Read at most one frame past the cap, in case the header understates the length.
            data = f.read(frames=-1 if limit is None else limit + 1, dtype="float32", always_2d=True)
        except Exception as err:
            raise InputError(f"cannot decode {name} ({decoder_reason(err, src)}); the file may be damaged") \
                from None
    promised = max(frames, opened.declared_frames or 0)
    held = data.shape[0]
    missing = promised - held
    if missing > max(_TRUNCATION_TOLERANCE * promised, 0.05 * rate) and (limit is None or held <= limit):
        cut = (f"{name} is truncated: its header promises {_duration(promised / rate)} of audio but the "
               f"file holds {_duration(held / rate)}")
        if held == 0 or (min_seconds is not None and held < min_seconds * rate):
            raise InputError(f"{cut}; upload the whole file")
        if notes is not None:
            notes.append(f"{cut}, searched with those {_duration(held / rate)}")
    if held == 0:
        raise InputError(f"{name} has no audio samples (zero length)")
    if limit is not None and held > limit:
        raise InputError(_too_long(name, None, max_seconds))
    return data, rate


def _too_long(name: str, seconds: float | None, max_seconds: float | None) -> str:
    length = f"{seconds:.1f} s long" if seconds is not None else "longer than the limit"
    return f"{name} is {length}; the limit is {max_seconds:g} s, trim it or raise max_seconds"


# --------------------------------------------------------------------------- arrays


def _from_array(src: tuple, *, max_seconds: float | None) -> tuple[np.ndarray, int]:
    if len(src) != 2:
        raise InputError(f"audio tuple must be (sample_rate, array), got {len(src)} items")
    rate, raw = src
    try:
        rate_f = float(rate)
    except (TypeError, ValueError):
        raise InputError(f"audio sample rate must be a number, got {type(rate).__name__}") from None
    if not math.isfinite(rate_f) or rate_f <= 0 or rate_f != int(rate_f):
        raise InputError(f"audio sample rate must be a positive integer, got {one_line(rate, 40)}")
    rate = int(rate_f)
    try:
        arr = np.asarray(raw)
    except Exception:
        raise InputError(f"audio data of type {type(raw).__name__} is not an array") from None
    if arr.dtype.kind not in "iuf":
        raise InputError(f"unsupported audio sample type {arr.dtype}; use integer or float samples")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        if arr.shape[1] > _MAX_CHANNELS and arr.shape[0] <= _MAX_CHANNELS:
            arr = arr.T  # (C, T) -> (T, C)
        elif arr.shape[1] > _MAX_CHANNELS:
            raise InputError(f"cannot tell channels from samples in an audio array of shape {arr.shape}")
    else:
        raise InputError(f"audio array must be 1-D or 2-D (samples, channels), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError("audio has no samples (zero length)")
    if max_seconds is not None and arr.shape[0] > max_seconds * rate:
        raise InputError(_too_long("audio", arr.shape[0] / rate, max_seconds))
    return _to_float(arr), rate


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Integer PCM to [-1, 1) floats by the full scale of its dtype; floats are kept as they are.

    int64 is no PCM format: it comes from Python lists of 16- or 32-bit samples, so its scale is the
    smallest of 16/32/64 bits that holds the values.
    """
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    bits = arr.dtype.itemsize * 8
    if arr.dtype == np.int64:
        peak = int(np.max(np.abs(arr.astype(np.float64))))
        bits = next(b for b in (16, 32, 64) if peak <= 2 ** (b - 1))
    scale = float(2 ** (bits - 1))
    if arr.dtype.kind == "u":
        return ((arr.astype(np.float64) - scale) / scale).astype(np.float32)
    return (arr.astype(np.float64) / scale).astype(np.float32)
