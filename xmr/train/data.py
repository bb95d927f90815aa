"""Training data: manifest rows -> cached decoded media -> batch tensors, with the augmentations
of Nakatsuka et al. 2023.

Decoding FLAC/PNG and resizing images every epoch would dominate a CPU run, so each split is
decoded once into a cache folder of ``.npy`` files (waveforms as int16 at the model's sample rate,
images as uint8 at the model's image size) keyed by the manifest, the split and the preprocessing;
later epochs and later runs read them through memory maps.

Randomness (audio crop position, affine parameters, caption choice) is drawn from a generator
seeded by ``(seed, step, item)``, never from a stateful stream: the same global batch therefore
gets the same augmentation whatever the number of processes, and a resumed run continues exactly.

Aligned sub-excerpts: with ``BatchSpec.span_prob > 0`` an item with a bar alignment (manifest
columns ``bar_onsets, bar_ends, bar_x0, bar_x1``) is, with that probability, cut to a random run
of ``span_min_bars``..``span_max_bars`` consecutive bars that fits the audio window: the audio from
the first bar's onset to the last bar's end, the image from the first bar's left to the last bar's
right pixel column (cut from a cache of the images at the model's height, then fitted like any
image), so both views hold the same bars. The span is drawn from its own seeded generator.

Real-input augmentation: ``BatchSpec.augment`` (an :class:`xmr.media.augment.Augmenter`) degrades
the cut audio (tempo, gain, EQ, room, noise, band-limit, codec) and the prepared image (perspective,
rotation, lighting, shadow, blur, noise, JPEG) as a recording or a phone photo would, each on its
own generator seeded by ``(seed, step, item)``.

Training views: with ``BatchSpec.views`` a row may use another rendering of its item (another
soundfont, another engraving) per modality, drawn per ``(seed, step, item)``; see :mod:`xmr.train.views`.

Example:
    >>> items = ItemStore.from_manifest("corpus/manifest.parquet", split="train",  # doctest: +SKIP
    ...                                 sample_rate=16000, image_size=(96, 384), image_mode="L",
    ...                                 cache_dir="runs/cache")
    >>> batch = items.batch([0, 5, 9], spec=BatchSpec(audio_samples=48000), seed=0, step=0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
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
    span_prob: float = 0.0      # probability of an aligned span of bars instead of the whole excerpt
    span_min_bars: int = 2
    span_max_bars: int = 4
    augment: Any = None         # xmr.media.augment.Augmenter (real-input augmentation) or None
    views: bool | float = False  # training views instead of the main files (xmr.train.views)
    view_modalities: tuple[str, ...] = ("audio", "image")  # where views may be drawn
    # modalities whose tensors are not made, only their presence: a frozen tower's features of each
    # item's fixed view are cached (ModelAdapter.cache_media_features)
    features_cached: tuple[str, ...] = ()
    # with features_cached: cached training copies per item besides the fixed view
    # (LoopConfig.feature_copies); each row draws one, Batch.copies
    feature_copies: int = 0
    # with feature_copies: the share of rows whose audio or image (one of the two, drawn) is the
    # item's fixed whole view while the other keeps its drawn copy (LoopConfig.partial_to_whole)
    partial_to_whole: float = 0.0

    def media_key(self) -> str:
        """The settings that make the media of a batch, spelled out (the augmenter's configs too),
        without those that only say which cached copy a row reads: cached copies are named by it."""
        from dataclasses import replace

        return repr(replace(self, features_cached=(), feature_copies=0, partial_to_whole=0.0))


@dataclass
class Batch:
    """One (sub-)batch: per-modality inputs, presence masks, dataset ids and caption strings."""

    indices: list[int]
    audio: Any = None      # torch (B, T) float32 waveform crops
    image: Any = None      # torch (B, C, H, W) float32 in [0, 1]
    text: list[str] = field(default_factory=list)
    present: dict[str, Any] = field(default_factory=dict)  # modality -> torch.bool (B,)
    spans: list[tuple[int, int] | None] = field(default_factory=list)  # bars (first, last) or None
    # modality -> torch.long (B,): valid audio samples (the rest of the row is zero padding) and
    # image content columns (centred, as resize="pad" places them); read by sequence towers
    lengths: dict[str, Any] = field(default_factory=dict)
    views: dict[str, list[str]] = field(default_factory=dict)  # modality -> "main" or the view's name
    # with BatchSpec.features_cached: each row's cached copy per modality (0 the fixed view); the same
    # for audio and image unless the row pairs a copy with the whole (BatchSpec.partial_to_whole)
    copies: dict[str, list[int]] = field(default_factory=dict)


def _generator(seed: int, step: int, index: int, salt: str = ""):
    import torch

    # A stable 63-bit seed per (run seed, step, item): independent of process count and history.
    key = f"{seed}:{step}:{index}" + (f":{salt}" if salt else "")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
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
                 images: np.ndarray | None, sample_rate: int, strips: dict[str, Any] | None = None,
                 image_widths: np.ndarray | None = None, views: Any = None):
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
        self.bars = _bar_alignments(self.frame)
        self.strips = strips  # images at the model's height for span cuts (see _cached_strips)
        # content columns of each cached image (resize="pad" centres a narrower image on white)
        self.image_widths = (np.asarray(image_widths, np.int64) if image_widths is not None
                             else np.full(n, images.shape[3] if images is not None else 1, np.int64))
        self.views = views  # xmr.train.views.ViewStore of the training views, or None

    def __len__(self) -> int:
        return len(self.ids)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_manifest(cls, manifest: str | Path, *, split: str | None, sample_rate: int,
                      image_size: tuple[int, int], image_mode: str = "L", image_resize: str = "pad",
                      modalities: tuple[str, ...] = ("audio", "image", "text"), cache_dir: str | Path,
                      max_items: int | None = None, progress: bool = False,
                      bar_spans: bool = False, views: bool = False) -> ItemStore:
        """Read a manifest split and load (or build) its media cache.

        Args:
            manifest: manifest file.
            split: split name to keep (None keeps every row).
            sample_rate: waveform rate the audio tower expects.
            image_size / image_mode / image_resize: the image tower's preprocessing.
            modalities: which media to decode.
            cache_dir: parent folder of the cache (one sub-folder per manifest/split/preprocessing).
            max_items: keep the first N rows of the split (smoke runs).
            bar_spans: also cache the images for aligned sub-excerpts (``BatchSpec.span_prob``).
            views: also decode the training views (``views.parquet``; ``BatchSpec.views``).
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
        strips = widths = None
        if "image" in modalities:
            widths = _cached_image_widths(frame, manifest, folder, image_size, image_resize)
        if bar_spans and "image" in modalities:
            strips = _cached_strips(frame, manifest, folder, image_size, image_mode, image_resize, progress)
        store = None
        if views:
            from xmr.train.views import ViewStore

            store = ViewStore.from_manifest(frame, manifest, folder, sample_rate=sample_rate,
                                            image_size=image_size, image_mode=image_mode,
                                            image_resize=image_resize, modalities=modalities,
                                            bar_spans=bar_spans, progress=progress, cache={
                                                "audio": _cached_audio, "images": _cached_images,
                                                "widths": _cached_image_widths, "media_file": _media_file,
                                                "save": _save_atomic})
        frame = frame.assign(_has_image=has_image)
        return cls(frame, audio=audio, audio_offsets=offsets, images=images, sample_rate=sample_rate,
                   strips=strips, image_widths=widths, views=store)

    # ---------------------------------------------------------------- access
    def waveform(self, index: int, view=None) -> np.ndarray:
        """The full decoded waveform of item ``index`` (or of its audio ``view``) as float32."""
        if view is not None:
            return view.waveform(index)
        a, b = int(self.audio_offsets[index]), int(self.audio_offsets[index + 1])
        return np.asarray(self.audio[a:b], dtype=np.float32) / 32767.0

    def image(self, index: int, view=None):
        """The prepared image of item ``index`` (or its ``view``) as a (C, H, W) float32 tensor in [0, 1]."""
        import torch

        if view is not None:
            return view.image(index)

        return torch.from_numpy(np.asarray(self.images[index], dtype=np.float32) / 255.0)

    def crop(self, index: int, length: int, *, gen=None, view=None) -> np.ndarray:
        """A ``length``-sample crop: random with ``gen``, else centred; short audio is zero-padded."""
        import torch

        wave = self.waveform(index, view)
        if len(wave) <= length:
            out = np.zeros(length, np.float32)
            out[:len(wave)] = wave
            return out
        span = len(wave) - length
        start = int(torch.randint(0, span + 1, (1,), generator=gen).item()) if gen is not None else span // 2
        return wave[start:start + length]

    def draw_copies(self, indices: Sequence[int], spec: BatchSpec, *, seed: int, step: int
                    ) -> dict[str, list[int]]:
        """Each row's cached copy (0 the fixed view) for every modality of ``spec.features_cached``.

        One copy per row is drawn uniformly from the ``1 + spec.feature_copies`` and shared by
        audio and image, so an aligned span stays a pair. With ``spec.partial_to_whole``, that
        share of the rows whose copy is not the fixed view gives one of audio and image (drawn
        evenly) the fixed whole view instead: a span of one side, or its degraded copy, is paired
        with the whole of the other, as a short clip or half a score is queried against whole items.
        Every draw is per (seed, step, item), so it does not depend on the batch or process count.
        """
        import torch

        n = spec.feature_copies + 1
        shared = [int(torch.randint(0, n, (1,), generator=_generator(seed, step, i, "copy")).item())
                  if n > 1 else 0 for i in indices]
        out = {m: list(shared) for m in spec.features_cached}
        if spec.partial_to_whole > 0 and {"audio", "image"} <= set(out):
            for row, (i, c) in enumerate(zip(indices, shared, strict=True)):
                u, side = torch.rand(2, generator=_generator(seed, step, i, "whole")).tolist()
                if c and u < spec.partial_to_whole:
                    out["audio" if side < 0.5 else "image"][row] = 0
        return out

    # ---------------------------------------------------------------- aligned spans of bars
    def draw_span(self, index: int, spec: BatchSpec, gen) -> tuple[int, int] | None:
        """Bars ``(first, last)`` (inclusive) of a random aligned span of item ``index``, or None
        for the whole excerpt (no alignment, too few bars, no span that fits the audio window, or
        the draw against ``spec.span_prob`` said whole).

        The length is uniform over the lengths ``span_min_bars..span_max_bars`` that have a span
        fitting the window, the first bar uniform over the spans of that length that fit.
        """
        import torch

        bars = self.bars[index]
        u, a, b = torch.rand(3, generator=gen).tolist()
        if bars is None or u >= spec.span_prob:
            return None
        onsets, ends = bars["bar_onsets"], bars["bar_ends"]
        n = len(onsets)
        limit = spec.audio_samples / self.sample_rate if "audio" in spec.modalities else float("inf")
        choices = {}
        for length in range(max(spec.span_min_bars, 1), min(spec.span_max_bars, n) + 1):
            starts = [k for k in range(n - length + 1) if ends[k + length - 1] - onsets[k] <= limit + 1e-9]
            if starts:
                choices[length] = starts
        if not choices:
            return None
        lengths = sorted(choices)
        length = lengths[min(int(a * len(lengths)), len(lengths) - 1)]
        starts = choices[length]
        first = starts[min(int(b * len(starts)), len(starts) - 1)]
        return first, first + length - 1

    def span_audio(self, index: int, first: int, last: int, view=None) -> np.ndarray:
        """The waveform of bars ``first..last``: from the first bar's onset to the last bar's end."""
        bars = self.bars[index]
        wave = self.waveform(index, view)
        a = round(float(bars["bar_onsets"][first]) * self.sample_rate)
        b = round(float(bars["bar_ends"][last]) * self.sample_rate)
        return wave[a:min(b, len(wave))]

    def span_strip(self, index: int, first: int, last: int, view=None) -> np.ndarray:
        """Bars ``first..last`` of the item's image at the model's height, uint8 ``(C, H, w)``:
        columns ``bar_x0[first]..bar_x1[last]`` of the PNG, scaled with the image (an image
        ``view``: cut per system, :meth:`xmr.train.views.View.span_strip`)."""
        if view is not None:
            return view.span_strip(index, first, last)
        if self.strips is None:
            raise ValueError("no image strips cached: build the ItemStore with bar_spans=True")
        bars = self.bars[index]
        a, b = int(self.strips["offsets"][index]), int(self.strips["offsets"][index + 1])
        k = (b - a) / float(self.strips["widths"][index])
        c0 = min(round(float(bars["bar_x0"][first]) * k), b - a - 1)
        c1 = min(max(round(float(bars["bar_x1"][last]) * k), c0 + 1), b - a)
        return np.asarray(self.strips["data"][:, :, a + c0:a + c1])

    def span_image(self, index: int, first: int, last: int, view=None):
        """:meth:`span_strip` fitted into the model's image size (its resize policy), as
        ``image`` gives it: (C, H, W) float32 in [0, 1] (its content width: :meth:`span_width`)."""
        import torch
        from PIL import Image

        from xmr.media.image import resize_image

        strip = self.span_strip(index, first, last, view)
        img = Image.fromarray(strip[0] if strip.shape[0] == 1 else strip.transpose(1, 2, 0))
        size = tuple(int(v) for v in self.images.shape[2:])
        arr = np.asarray(resize_image(img, size=size, policy=self.strips["resize"]), dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr) / 255.0)

    def span_width(self, index: int, first: int, last: int, view=None) -> int:
        """Content columns of :meth:`span_image` (the strip's width fitted into the image size)."""
        from xmr.models.sequence import fitted_width

        strip = self.span_strip(index, first, last, view)
        size = tuple(int(v) for v in self.images.shape[2:])
        return fitted_width(strip.shape[2], strip.shape[1], size, self.strips["resize"])

    def audio_length(self, index: int, view=None) -> int:
        """Samples in item ``index``'s decoded waveform (or its audio ``view``'s)."""
        if view is not None:
            return int(view.offsets[index + 1] - view.offsets[index])
        return int(self.audio_offsets[index + 1] - self.audio_offsets[index])

    def batch(self, indices: list[int], *, spec: BatchSpec, seed: int = 0, step: int = 0) -> Batch:
        """Make the tensors of one batch (augmented per ``spec``)."""
        import torch

        out = Batch(indices=list(indices))
        gens = [_generator(seed, step, i) for i in indices]
        spans: list[tuple[int, int] | None] = [None] * len(indices)
        if spec.span_prob > 0:
            spans = [self.draw_span(i, spec, _generator(seed, step, i, "span")) for i in indices]
        out.spans = spans
        picks = {m: [None] * len(indices) for m in ("audio", "image")}
        if spec.views and self.views:
            picks = self.views.draw(indices, views=spec.views, modalities=spec.view_modalities,
                                    seed=seed, step=step, generator=_generator)
        out.views = {m: [v.name if v is not None else "main" for v in picks[m]] for m in picks}
        aug = spec.augment if spec.augment is not None and spec.augment.audio_cfg is not None else None
        for m in spec.features_cached:
            out.present[m] = torch.from_numpy(self.has[m][indices].copy())
        if spec.features_cached:
            out.copies = self.draw_copies(indices, spec, seed=seed, step=step)
        if "audio" in spec.modalities and "audio" not in spec.features_cached:
            crops, lengths = [], []
            for i, g, span, view in zip(indices, gens, spans, picks["audio"], strict=True):
                if not self.has["audio"][i]:
                    crops.append(np.zeros(spec.audio_samples, np.float32))
                    lengths.append(spec.audio_samples)
                elif span is not None:
                    wave = self.span_audio(i, *span, view)[:spec.audio_samples]
                    if aug is not None:  # after the cut: a time-stretched span stays whole
                        wave = aug.audio(wave, self.sample_rate, gen=_generator(seed, step, i, "augment"),
                                         max_samples=spec.audio_samples, fit="keep")
                    lengths.append(max(min(len(wave), spec.audio_samples), 1))
                    crops.append(np.pad(wave, (0, spec.audio_samples - len(wave))))
                else:
                    n = spec.audio_samples if aug is None else aug.source_samples(spec.audio_samples)
                    wave = self.crop(i, n, gen=g if spec.random_crop else None, view=view)
                    valid = min(self.audio_length(i, view), spec.audio_samples)  # crop() zero-pads
                    if aug is not None:
                        wave = aug.audio(wave, self.sample_rate, gen=_generator(seed, step, i, "augment"),
                                         max_samples=spec.audio_samples, fit="trim")
                        valid = min(len(wave), spec.audio_samples)
                        wave = np.pad(wave, (0, spec.audio_samples - len(wave)))
                    lengths.append(max(valid, 1))
                    crops.append(wave)
            out.audio = torch.from_numpy(np.stack(crops))
            out.lengths["audio"] = torch.tensor(lengths, dtype=torch.long)
            out.present["audio"] = torch.from_numpy(self.has["audio"][indices].copy())
        if "image" in spec.modalities and "image" not in spec.features_cached:
            cut = [span is not None and bool(self.has["image"][i])
                   for i, span in zip(indices, spans, strict=True)]
            rows = list(zip(indices, spans, cut, picks["image"], strict=True))
            images = torch.stack([self.span_image(i, *span, v) if c else self.image(i, v)
                                  for i, span, c, v in rows])
            out.lengths["image"] = torch.tensor(
                [self.span_width(i, *span, v) if c else int((v.widths if v else self.image_widths)[i])
                 for i, span, c, v in rows], dtype=torch.long)
            if spec.affine:
                params = [affine_params(g, degrees=spec.affine_degrees, translate=spec.affine_translate,
                                        scale=tuple(spec.affine_scale)) for g in gens]
                warped = apply_affine(images, params)
                keep = torch.from_numpy(self.has["image"][indices].copy())[:, None, None, None]
                images = torch.where(keep, warped, images)
            if spec.augment is not None and spec.augment.image_cfg is not None:
                images = torch.stack([
                    spec.augment.image(img, gen=_generator(seed, step, i, "augment-image"))
                    if self.has["image"][i] else img for img, i in zip(images, indices, strict=True)])
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


def _bar_alignments(frame) -> list[dict[str, np.ndarray] | None]:
    """Each row's bar alignment (``xmr.data.manifest.bar_alignment``), None where it has none."""
    from xmr.data.manifest import BAR_COLUMNS, bar_alignment

    if not all(c in frame.columns for c in BAR_COLUMNS[:4]):
        return [None] * len(frame)
    return [bar_alignment(row) for _, row in frame.iterrows()]


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
    """The item's file (:func:`xmr.data.files.media_file`), ``None`` when the row has no such view."""
    from xmr.data.files import has_value, media_file

    if not has_value(row.get(modality)):
        return None
    try:
        return media_file(row, modality, manifest_dir=manifest.parent)
    except Exception as err:  # noqa: BLE001 - reported as a manifest problem
        raise ManifestError(f"item {row.get('id')}: {modality} file not found: {row.get(modality)} "
                            f"({err})") from err


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


def _cached_image_widths(frame, manifest: Path, folder: Path, size, resize: str) -> np.ndarray:
    """Content columns of each cached image (:func:`xmr.models.sequence.fitted_width` of the
    file's own size; only the header is read), cached beside the images; the full width for rows
    without an image."""
    path = folder / "images_widths.npy"
    if path.exists():
        return np.load(path)
    from PIL import Image

    from xmr.models.sequence import fitted_width

    folder.mkdir(parents=True, exist_ok=True)
    widths = np.full(len(frame), int(size[1]), np.int64)
    for k, (_, row) in enumerate(frame.iterrows()):
        path_k = _media_file(row, "image", manifest)
        if path_k is not None:
            with Image.open(path_k) as img:
                widths[k] = fitted_width(img.width, img.height, size, resize)
    _save_atomic(path, widths)
    return widths


def _cached_strips(frame, manifest: Path, folder: Path, size, mode: str, resize: str,
                   progress: bool) -> dict[str, Any]:
    """Images at the model's height ``size[0]`` (aspect kept, uint8), side by side in one
    ``(C, H, total width)`` array, for cutting aligned spans of bars (:meth:`ItemStore.span_strip`).

    Returns ``{"data", "offsets"`` (N + 1 column offsets), ``"widths"`` (each PNG's own width, to
    map its bar pixel columns), ``"resize"}``. Rows without an image get zero width.
    """
    data_path, off_path = folder / "strips.npy", folder / "strips_offsets.npy"
    wid_path = folder / "strips_widths.npy"
    if not (data_path.exists() and off_path.exists() and wid_path.exists()):
        from PIL import Image
        from tqdm import tqdm

        from xmr.media.image import load_image

        folder.mkdir(parents=True, exist_ok=True)
        height = int(size[0])
        channels = 1 if mode == "L" else 3
        chunks, offsets, widths = [], [0], []
        for _, row in tqdm(frame.iterrows(), total=len(frame), desc="decode image strips",
                           disable=not progress):
            path = _media_file(row, "image", manifest)
            if path is None:
                chunks.append(np.zeros((channels, height, 0), np.uint8))
                widths.append(1)
            else:
                img = load_image(path, mode=mode)
                widths.append(img.width)
                scaled = img.resize((max(1, round(img.width * height / img.height)), height),
                                    Image.Resampling.BICUBIC)
                arr = np.asarray(scaled, np.uint8)
                chunks.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            offsets.append(offsets[-1] + chunks[-1].shape[2])
        _save_atomic(data_path, np.concatenate(chunks, axis=2))
        _save_atomic(off_path, np.asarray(offsets, np.int64))
        _save_atomic(wid_path, np.asarray(widths, np.int64))
    return {"data": np.load(data_path, mmap_mode="r"), "offsets": np.load(off_path),
            "widths": np.load(wid_path), "resize": resize}


def _save_atomic(path: Path, array: np.ndarray) -> None:
    import os

    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
