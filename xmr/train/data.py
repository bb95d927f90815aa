"""Training data: manifest rows -> cached decoded media -> batch tensors, with the augmentations
of Nakatsuka et al. 2023.

Decoding FLAC/PNG and resizing images every epoch would dominate a CPU run, so each split is
decoded once into a cache folder of ``.npy`` files (waveforms as int16 at the model's sample rate,
images as uint8 at the model's image size) keyed by the manifest, the split and the preprocessing;
later epochs and later runs read them through memory maps.

Randomness (audio crop position, affine parameters, caption choice) is drawn from a generator
seeded by ``(seed, step, item)``, never from a stateful stream: the same global batch therefore
gets the same augmentation whatever the number of processes, and a resumed run continues exactly.

Example:
    >>> items = ItemStore.from_manifest("corpus/manifest.parquet", split="train",  # doctest: +SKIP
    ...                                 sample_rate=16000, image_size=(96, 384), image_mode="L",
    ...                                 cache_dir="runs/cache")
    >>> batch = items.batch([0, 5, 9], spec=BatchSpec(audio_samples=48000), seed=0, step=0)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmr.errors import ManifestError


@dataclass
class BatchSpec:
    """How the tensors of one batch are made (training vs evaluation)."""

    modalities: tuple[str, ...] = ("audio", "image", "text")
    audio_samples: int = 48000
    random_crop: bool = False
    affine: bool = False
    affine_degrees: float = 25.0
    affine_translate: float = 0.15
    affine_scale: tuple[float, float] = (0.75, 1.25)
    caption_choice: str = "first"


@dataclass
class Batch:
    """One (sub-)batch: per-modality inputs, presence masks, dataset ids and caption strings."""

    indices: list[int]
    audio: Any = None      # torch (B, T) float32 waveform crops
    image: Any = None      # torch (B, C, H, W) float32 in [0, 1]
    text: list[str] = field(default_factory=list)
    present: dict[str, Any] = field(default_factory=dict)  # modality -> torch.bool (B,)


def _generator(seed: int, step: int, index: int):
    import torch

    # A stable 63-bit seed per (run seed, step, item): independent of process count and history.
    digest = hashlib.blake2b(f"{seed}:{step}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def affine_params(gen, *, degrees: float, translate: float, scale: tuple[float, float]) -> tuple[float, ...]:
    """Draw (angle in degrees, tx, ty as fractions of the size, scale) from ``gen``."""
    import torch

    u = torch.rand(4, generator=gen).tolist()
    return ((2 * u[0] - 1) * degrees, (2 * u[1] - 1) * translate, (2 * u[2] - 1) * translate,
            scale[0] + u[3] * (scale[1] - scale[0]))


def apply_affine(imgs, params: list[tuple[float, ...]]):
    """Warp a batch (B, C, H, W) with one (angle, tx, ty, scale) per image in one ``grid_sample``;
    the uncovered border is filled with each image's border colour (its median: white paper for a
    score, so the augmentation does not invent black frames)."""
    import math

    import torch

    b, c, h, w = imgs.shape
    border = torch.cat([imgs[:, :, 0, :], imgs[:, :, -1, :], imgs[:, :, :, 0], imgs[:, :, :, -1]], dim=2)
    fill = border.median(dim=2).values[:, :, None, None]  # (B, C, 1, 1)
    theta = torch.zeros(b, 2, 3)
    d = torch.tensor([w / 2.0, h / 2.0])
    for k, (angle, tx, ty, sc) in enumerate(params):
        a = math.radians(angle)
        # output pixel p -> input pixel R(-a) (p - t) / s, in coordinates centred on the image
        rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / float(sc)
        t = torch.tensor([float(tx) * w, float(ty) * h])
        theta[k, :, :2] = rot * d[None, :] / d[:, None]
        theta[k, :, 2] = -(rot @ t) / d
    grid = torch.nn.functional.affine_grid(theta, [b, c, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(imgs - fill, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out + fill


def random_affine(img, *, gen, degrees: float, translate: float, scale: tuple[float, float]):
    """The image augmentation of Nakatsuka et al. 2023 (Sec. 4.1.2) on one (C, H, W) image: rotation
    in ±degrees, translation up to ``translate`` of the size, isotropic scale in ``scale`` (see
    :func:`apply_affine`)."""
    params = affine_params(gen, degrees=degrees, translate=translate, scale=scale)
    return apply_affine(img[None], [params])[0]


class ItemStore:
    """The items of one split with their decoded media cached as arrays.

    Attributes:
        ids: item ids (manifest ``id``), position = dataset index used by memory banks.
        captions: list of caption lists.
        has: modality -> bool array (N,) of which items have that modality.
    """

    def __init__(self, frame, *, audio: np.ndarray | None, audio_offsets: np.ndarray | None,
                 images: np.ndarray | None, sample_rate: int):
        self.frame = frame.reset_index(drop=True)
        self.ids = [str(x) for x in self.frame["id"]]
        self.captions = [_caption_list(c) for c in self.frame["caption"]] if "caption" in frame else [
            [] for _ in self.ids]
        self.audio = audio
        self.audio_offsets = audio_offsets
        self.images = images
        self.sample_rate = sample_rate
        n = len(self.ids)
        has_image = (np.asarray(self.frame["_has_image"], bool) if "_has_image" in self.frame
                     else np.full(n, images is not None))
        self.has = {
            "audio": (np.diff(audio_offsets) > 0) if audio_offsets is not None else np.zeros(n, bool),
            "image": has_image if images is not None else np.zeros(n, bool),
            "text": np.array([len(c) > 0 for c in self.captions], bool),
        }

    def __len__(self) -> int:
        return len(self.ids)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_manifest(cls, manifest: str | Path, *, split: str | None, sample_rate: int,
                      image_size: tuple[int, int], image_mode: str = "L", image_resize: str = "pad",
                      modalities: tuple[str, ...] = ("audio", "image", "text"), cache_dir: str | Path,
                      max_items: int | None = None, progress: bool = False) -> ItemStore:
        """Read a manifest split and load (or build) its media cache.

        Args:
            manifest: manifest file.
            split: split name to keep (None keeps every row).
            sample_rate: waveform rate the audio tower expects.
            image_size / image_mode / image_resize: the image tower's preprocessing.
            modalities: which media to decode.
            cache_dir: parent folder of the cache (one sub-folder per manifest/split/preprocessing).
            max_items: keep the first N rows of the split (smoke runs).
        """
        manifest = Path(manifest)
        frame = _read_manifest(manifest)
        if split is not None:
            frame = frame[frame["split"] == split]
        if max_items:
            frame = frame.iloc[:max_items]
        frame = frame.reset_index(drop=True)
        if len(frame) == 0:
            raise ManifestError(f"{manifest}: no items in split {split!r}")
        key = hashlib.sha1(json.dumps({
            "manifest": str(manifest.resolve()), "mtime": manifest.stat().st_mtime_ns, "split": split,
            "max_items": max_items, "sr": sample_rate, "size": list(image_size), "mode": image_mode,
            "resize": image_resize,
            "ids": hashlib.sha1("\n".join(map(str, frame["id"])).encode()).hexdigest(),
        }, sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(cache_dir) / f"{split or 'all'}-{key}"
        audio = offsets = images = None
        if "audio" in modalities:
            audio, offsets = _cached_audio(frame, manifest, folder, sample_rate, progress)
        has_image = np.ones(len(frame), bool)
        if "image" in modalities:
            images, has_image = _cached_images(frame, manifest, folder, image_size, image_mode,
                                               image_resize, progress)
        frame = frame.assign(_has_image=has_image)
        return cls(frame, audio=audio, audio_offsets=offsets, images=images, sample_rate=sample_rate)

    # ---------------------------------------------------------------- access
    def waveform(self, index: int) -> np.ndarray:
        """The full decoded waveform of item ``index`` as float32."""
        a, b = int(self.audio_offsets[index]), int(self.audio_offsets[index + 1])
        return np.asarray(self.audio[a:b], dtype=np.float32) / 32767.0

    def image(self, index: int):
        """The prepared image of item ``index`` as a (C, H, W) float32 tensor in [0, 1]."""
        import torch

        return torch.from_numpy(np.asarray(self.images[index], dtype=np.float32) / 255.0)

    def crop(self, index: int, length: int, *, gen=None) -> np.ndarray:
        """A ``length``-sample crop: random with ``gen``, else centred; short audio is zero-padded."""
        import torch

        wave = self.waveform(index)
        if len(wave) <= length:
            out = np.zeros(length, np.float32)
            out[:len(wave)] = wave
            return out
        span = len(wave) - length
        start = int(torch.randint(0, span + 1, (1,), generator=gen).item()) if gen is not None else span // 2
        return wave[start:start + length]

    def batch(self, indices: list[int], *, spec: BatchSpec, seed: int = 0, step: int = 0) -> Batch:
        """Make the tensors of one batch (augmented per ``spec``)."""
        import torch

        out = Batch(indices=list(indices))
        gens = [_generator(seed, step, i) for i in indices]
        if "audio" in spec.modalities:
            crops = [self.crop(i, spec.audio_samples, gen=g if spec.random_crop else None)
                     if self.has["audio"][i] else np.zeros(spec.audio_samples, np.float32)
                     for i, g in zip(indices, gens, strict=True)]
            out.audio = torch.from_numpy(np.stack(crops))
            out.present["audio"] = torch.from_numpy(self.has["audio"][indices].copy())
        if "image" in spec.modalities:
            images = torch.stack([self.image(i) for i in indices])
            if spec.affine:
                params = [affine_params(g, degrees=spec.affine_degrees, translate=spec.affine_translate,
                                        scale=tuple(spec.affine_scale)) for g in gens]
                warped = apply_affine(images, params)
                keep = torch.from_numpy(self.has["image"][indices].copy())[:, None, None, None]
                images = torch.where(keep, warped, images)
            out.image = images
            out.present["image"] = torch.from_numpy(self.has["image"][indices].copy())
        if "text" in spec.modalities:
            texts = []
            for i, g in zip(indices, gens, strict=True):
                caps = self.captions[i]
                if not caps:
                    texts.append("")
                elif spec.caption_choice == "random":
                    texts.append(caps[int(torch.randint(0, len(caps), (1,), generator=g).item())])
                else:
                    texts.append(caps[0])
            out.text = texts
            out.present["text"] = torch.from_numpy(self.has["text"][indices].copy())
        return out


def _read_manifest(path: Path):
    from xmr.data.manifest import read_manifest

    return read_manifest(path)


def _caption_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    try:
        return [str(v) for v in list(value) if v is not None and str(v).strip()]
    except TypeError:
        return []


def _media_file(row, modality: str, manifest: Path) -> Path | None:
    value = row.get(modality)
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    path = Path(str(value))
    if path.exists():
        return path
    try:  # a corpus item whose media were not rendered yet: render it into the cache
        from xmr.data.corpus import media_path

        return media_path(row, modality, manifest_dir=manifest.parent)
    except Exception as err:  # noqa: BLE001 - reported as a manifest problem
        raise ManifestError(f"item {row.get('id')}: {modality} file not found: {path} ({err})") from err


def _cached_audio(frame, manifest: Path, folder: Path, sample_rate: int, progress: bool):
    wav_path, off_path = folder / "audio.npy", folder / "audio_offsets.npy"
    if wav_path.exists() and off_path.exists():
        return np.load(wav_path, mmap_mode="r"), np.load(off_path)
    from tqdm import tqdm

    from xmr.media.audio import load_audio

    folder.mkdir(parents=True, exist_ok=True)
    chunks, offsets = [], [0]
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc="decode audio", disable=not progress):
        path = _media_file(row, "audio", manifest)
        if path is None:
            wave = np.zeros(0, np.float32)
        else:
            wave = load_audio(path, sample_rate=sample_rate)
        chunks.append(np.clip(np.round(wave * 32767.0), -32767, 32767).astype(np.int16))
        offsets.append(offsets[-1] + len(wave))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    _save_atomic(wav_path, audio)
    _save_atomic(off_path, np.asarray(offsets, np.int64))
    return np.load(wav_path, mmap_mode="r"), np.asarray(offsets, np.int64)


def _cached_images(frame, manifest: Path, folder: Path, size, mode: str, resize: str, progress: bool):
    img_path, has_path = folder / "images.npy", folder / "images_present.npy"
    if img_path.exists() and has_path.exists():
        return np.load(img_path, mmap_mode="r"), np.load(has_path)
    from tqdm import tqdm

    from xmr.media.image import ImageConfig, load_image, prepare_image

    folder.mkdir(parents=True, exist_ok=True)
    cfg = ImageConfig(size=tuple(size), mode=mode, resize=resize)
    channels = 1 if mode == "L" else 3
    out = np.zeros((len(frame), channels, int(size[0]), int(size[1])), np.uint8)
    has = np.zeros(len(frame), bool)
    for k, (_, row) in enumerate(tqdm(frame.iterrows(), total=len(frame), desc="decode images",
                                      disable=not progress)):
        path = _media_file(row, "image", manifest)
        if path is None:
            continue
        tensor = prepare_image(load_image(path), cfg)  # (C, H, W) in [0, 1]
        out[k] = np.clip(np.round(tensor.numpy() * 255.0), 0, 255).astype(np.uint8)
        has[k] = True
    _save_atomic(img_path, out)
    _save_atomic(has_path, has)
    return np.load(img_path, mmap_mode="r"), has


def _save_atomic(path: Path, array: np.ndarray) -> None:
    import os

    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
