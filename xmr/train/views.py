"""Training views: further renderings of a training item (``views.parquet`` beside the manifest,
see :func:`xmr.data.manifest.read_views`) that a training row may use instead of its main file.

The demo corpus gives each training item an ``audio_sf`` view (the same MIDI through another
training soundfont) and an ``image_layout`` view (another engraving: music font, spacing, staff
size, a title, sometimes two systems). With ``BatchSpec.views`` on, every row draws, per modality,
whether to use the main file or one of the item's views of that modality, from its own generator
seeded by ``(seed, step, item)`` (salt ``"view"``), so the draw does not depend on the number of
processes and leaves the other draws (crop, span, augmentation) as they were:

* ``views: true``: uniform among the main file and the item's views (as
  :func:`xmr.data.manifest.draw_view`; with one view per modality, half the rows use it);
* ``views: p`` (a number in [0, 1]): a view with probability ``p`` (uniform among the item's
  views), the main file otherwise; ``false`` or 0: always the main file.

Each view is decoded once into the same kind of cache as the main media (waveforms at the model's
rate; images prepared at the model's size, with their content widths), in a sub-folder of the
split's cache keyed by ``views.parquet``.

Aligned spans on a view: an audio view plays the item's MIDI, so the manifest's bar onsets hold.
An image view has its own bar boxes (``bar_x0, bar_x1, bar_y0, bar_y1`` per bar); a view engraved
on two systems is cut *per system*: each system's band of rows (from the top of the image, or the
middle between its staff and the previous system's, to the middle before the next system, or the
bottom) is scaled to the model's height, the span's bars of each system are cut from their band by
their x-range, and the pieces are concatenated left to right in bar order. A span that crosses a
line break therefore reads as one line of music, as the main one-system engraving does. A whole
view (no span) is used as engraved, two systems and all, as a page a visitor photographs would be.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIEW_SALT = "view"


def view_index(u: float, n_views: int, views: bool | float) -> int:
    """Which rendering ``u`` in [0, 1) picks: 0 the main file, ``k`` the item's ``k``-th view of
    the modality (1-based), by the ``views`` setting (see the module docstring)."""
    if n_views <= 0 or views is False or views is None:
        return 0
    if views is True:
        return min(int(u * (n_views + 1)), n_views)
    p = float(views)
    if u >= p:
        return 0
    return 1 + min(int(u / p * n_views), n_views - 1)


def check_views_setting(value: Any) -> bool | float:
    """``data.views`` as ``True``/``False`` or a probability in [0, 1]; ValueError otherwise."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise ValueError(f"data.views must be true, false or a probability in [0, 1], got {value!r}")


@dataclass
class View:
    """One view of the items of a split, decoded (rows without that view have ``has`` False)."""

    name: str
    modality: str                       # "audio" or "image"
    has: np.ndarray                     # (N,) bool
    audio: Any = None                   # int16 concatenated waveforms (audio views)
    offsets: np.ndarray | None = None   # (N + 1,) sample offsets
    images: Any = None                  # (N, C, H, W) uint8 prepared images (image views)
    widths: np.ndarray | None = None    # (N,) content columns of each prepared image
    bands: dict[str, Any] | None = None  # per-system strips at the model's height (span cuts)
    bars: list[dict[str, np.ndarray] | None] | None = None  # each row's bar boxes in this view

    def waveform(self, index: int) -> np.ndarray:
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        return np.asarray(self.audio[a:b], dtype=np.float32) / 32767.0

    def image(self, index: int):
        import torch

        return torch.from_numpy(np.asarray(self.images[index], dtype=np.float32) / 255.0)

    def span_strip(self, index: int, first: int, last: int) -> np.ndarray:
        """Bars ``first..last`` of this view's image at the model's height, uint8 ``(C, H, w)``:
        each system's bars cut from that system's band by their x-range, left to right."""
        if self.bands is None:
            raise ValueError("no view strips cached: build the ItemStore with bar_spans=True")
        return cut_bands(self.bands, index, self.bars[index], first, last)

    def span_pieces(self, index: int, first: int, last: int) -> list[tuple[int, int, int, float]]:
        """``(system, x0, x1, scale)`` of each piece of :meth:`span_strip`: the PNG columns of the
        span's bars on each system and that system's band's scale to the model's height."""
        return _pieces(self.bands, index, self.bars[index], first, last)


class ViewStore:
    """The training views of an :class:`xmr.train.data.ItemStore`'s rows, by modality."""

    def __init__(self, views: dict[str, list[View]]):
        self.by_modality = {m: list(views.get(m, [])) for m in ("audio", "image")}

    def __bool__(self) -> bool:
        return any(self.by_modality.values())

    def draw(self, indices: list[int], *, views: bool | float, modalities: tuple[str, ...], seed: int,
             step: int, generator) -> dict[str, list[View | None]]:
        """Per modality, each row's rendering (None: the main file), drawn per (seed, step, item)
        from ``generator(seed, step, item, salt)`` (``xmr.train.data._generator``)."""
        import torch

        out: dict[str, list[View | None]] = {m: [None] * len(indices) for m in ("audio", "image")}
        if not views:
            return out
        for row, i in enumerate(indices):
            u = torch.rand(2, generator=generator(seed, step, i, VIEW_SALT)).tolist()
            for k, m in enumerate(("audio", "image")):
                if m not in modalities:
                    continue
                have = [v for v in self.by_modality[m] if v.has[i]]
                pick = view_index(u[k], len(have), views)
                out[m][row] = have[pick - 1] if pick else None
        return out

    @classmethod
    def from_manifest(cls, frame, manifest: Path, folder: Path, *, sample_rate: int, image_size,
                      image_mode: str, image_resize: str, modalities: tuple[str, ...], bar_spans: bool,
                      cache, progress: bool = False) -> ViewStore:
        """Decode the training views (:data:`xmr.data.manifest.TRAIN_VIEWS`) of ``frame``'s rows
        into sub-folders of ``folder``; an empty store when the manifest has no views. ``cache``
        holds the decoders of the main media (``audio, images, widths, media_file, save``:
        :mod:`xmr.train.data`'s), so that a view is decoded exactly as a main file."""
        from xmr.data.manifest import TRAIN_VIEWS, read_views, view_alignment

        table = read_views(manifest)
        if not len(table):
            return cls({})
        table = table[table["view"].isin(list(TRAIN_VIEWS))]
        ids = [str(x) for x in frame["id"]]
        key = hashlib.sha1(json.dumps({
            "views": (Path(manifest).resolve().parent / "views.parquet").stat().st_mtime_ns,
            "ids": hashlib.sha1("\n".join(ids).encode()).hexdigest(),
        }).encode()).hexdigest()[:12]
        out: dict[str, list[View]] = {}
        for name in TRAIN_VIEWS:
            rows = table[table["view"] == name]
            if not len(rows):
                continue
            modality = str(rows["modality"].iloc[0])
            if modality not in modalities:
                continue
            recs = {str(r["id"]): r for r in rows.to_dict(orient="records")}
            paths = [recs[i]["path"] if i in recs else None for i in ids]
            sub = frame.drop(columns=[c for c in ("audio", "image") if c in frame]).assign(
                **{modality: paths})
            place = folder / f"views-{key}" / name
            if modality == "audio":
                audio, offsets = cache["audio"](sub, manifest, place, sample_rate, progress)
                out.setdefault("audio", []).append(View(name, "audio", np.diff(offsets) > 0,
                                                        audio=audio, offsets=offsets))
                continue
            images, has = cache["images"](sub, manifest, place, image_size, image_mode, image_resize,
                                               progress)
            widths = cache["widths"](sub, manifest, place, image_size, image_resize)
            bars = [view_alignment(row, recs.get(i)) if i in recs else None
                    for i, (_, row) in zip(ids, frame.iterrows(), strict=True)]
            bands = (_cached_bands(sub, manifest, place, bars, image_size, image_mode, image_resize, cache)
                     if bar_spans else None)
            out.setdefault("image", []).append(View(name, "image", np.asarray(has, bool), images=images,
                                                    widths=widths, bands=bands, bars=bars))
        return cls(out)


def systems(bars: dict[str, np.ndarray] | None) -> np.ndarray:
    """Each bar's system (0 = the top one), from its ``bar_y0``; all 0 without rows."""
    if bars is None or "bar_y0" not in bars:
        n = 0 if bars is None else len(bars["bar_x0"])
        return np.zeros(n, np.int64)
    tops = np.unique(bars["bar_y0"])
    return np.searchsorted(tops, bars["bar_y0"]).astype(np.int64)


def band_rows(bars: dict[str, np.ndarray] | None, height: int) -> list[tuple[int, int]]:
    """Pixel rows ``[top, bottom)`` of each system's band: split at the middle between one
    system's bottom staff line and the next one's top staff line."""
    if bars is None or "bar_y0" not in bars:
        return [(0, height)]
    sys_of = systems(bars)
    n = int(sys_of.max()) + 1 if len(sys_of) else 1
    y0 = [int(bars["bar_y0"][sys_of == s].min()) for s in range(n)]
    y1 = [int(bars["bar_y1"][sys_of == s].max()) for s in range(n)]
    cuts = [0] + [max(1, min(height - 1, (y1[s] + y0[s + 1]) // 2)) for s in range(n - 1)] + [height]
    return [(cuts[s], cuts[s + 1]) for s in range(n)]


def _cached_bands(frame, manifest: Path, folder: Path, bars, size, mode: str, resize: str,
                  cache) -> dict[str, Any]:
    """Each image's system bands scaled to the model's height ``size[0]`` (aspect kept, uint8),
    side by side in one ``(C, H, total)`` array: ``{"data", "offsets"`` (band column offsets),
    ``"item_bands"`` (N + 1 offsets into the bands), ``"png_widths"`` (each band's width in the
    PNG, to map bar columns), ``"resize"}``."""
    _media_file, _save_atomic = cache["media_file"], cache["save"]
    paths = {k: folder / f"bands_{k}.npy" for k in ("data", "offsets", "items", "png")}
    if not all(p.exists() for p in paths.values()):
        from PIL import Image

        from xmr.media.image import load_image

        folder.mkdir(parents=True, exist_ok=True)
        height, channels = int(size[0]), 1 if mode == "L" else 3
        chunks, offsets, items, png = [], [0], [0], []
        for k, (_, row) in enumerate(frame.iterrows()):
            path = _media_file(row, "image", manifest)
            if path is not None:
                img = load_image(path, mode=mode)
                for top, bottom in band_rows(bars[k], img.height):
                    band = img.crop((0, top, img.width, bottom))
                    scaled = band.resize((max(1, round(img.width * height / band.height)), height),
                                         Image.Resampling.BICUBIC)
                    arr = np.asarray(scaled, np.uint8)
                    chunks.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
                    offsets.append(offsets[-1] + chunks[-1].shape[2])
                    png.append(img.width)
            items.append(len(png))
        data = np.concatenate(chunks, axis=2) if chunks else np.zeros((channels, height, 0), np.uint8)
        _save_atomic(paths["data"], data)
        _save_atomic(paths["offsets"], np.asarray(offsets, np.int64))
        _save_atomic(paths["items"], np.asarray(items, np.int64))
        _save_atomic(paths["png"], np.asarray(png, np.int64))
    return {"data": np.load(paths["data"], mmap_mode="r"), "offsets": np.load(paths["offsets"]),
            "item_bands": np.load(paths["items"]), "png_widths": np.load(paths["png"]), "resize": resize}


def _pieces(bands: dict[str, Any], index: int, bars, first: int, last: int):
    sys_of = systems(bars)
    base = int(bands["item_bands"][index])
    out = []
    for s in sorted(set(sys_of[first:last + 1].tolist())):
        ks = [k for k in range(first, last + 1) if sys_of[k] == s]
        band = base + s
        a, b = int(bands["offsets"][band]), int(bands["offsets"][band + 1])
        scale = (b - a) / float(bands["png_widths"][band])
        out.append((s, int(bars["bar_x0"][ks[0]]), int(bars["bar_x1"][ks[-1]]), scale))
    return out


def cut_bands(bands: dict[str, Any], index: int, bars, first: int, last: int) -> np.ndarray:
    """The strip of bars ``first..last`` of item ``index`` (see :meth:`View.span_strip`)."""
    if bars is None:
        raise ValueError(f"item {index} has no bar alignment in this view")
    base = int(bands["item_bands"][index])
    pieces = []
    for s, x0, x1, scale in _pieces(bands, index, bars, first, last):
        a, b = int(bands["offsets"][base + s]), int(bands["offsets"][base + s + 1])
        c0 = min(round(x0 * scale), b - a - 1)
        c1 = min(max(round(x1 * scale), c0 + 1), b - a)
        pieces.append(np.asarray(bands["data"][:, :, a + c0:a + c1]))
    return np.concatenate(pieces, axis=2)
