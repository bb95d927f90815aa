"""Image decoding and validation: untrusted images in, ``(C, H, W)`` float tensors out.

Decoding uses Pillow. The pixel count is checked from the header before any pixel is decoded (a
decompression-bomb guard), EXIF orientation is applied, transparency is flattened onto white, and
the mode is converted to RGB or L. :class:`ImageConfig` holds the target size, mode and resize
policy (pad, crop or stretch). Everything a user can get wrong raises
:class:`xmr.errors.InputError` with a one-line message that names a file by its own name and keeps
the decoder's whole reason; an extreme aspect ratio is refused from the header when a limit is
given (``max_aspect``), and an animation is read at its first frame with a note (``notes``).

Example::

    from xmr.media.image import ImageConfig, load_image, prepare_image
    img = load_image("cover.jpg")
    x = prepare_image(img, ImageConfig(size=(256, 256), mode="RGB", resize="pad"))  # (3, 256, 256)
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmr.config import strict_from_dict
from xmr.errors import ConfigError, InputError
from xmr.media._common import decoder_reason, describe, open_source

DEFAULT_MAX_PIXELS = 50_000_000
# Pillow formats we accept; others it can open (EPS, PSD, ICO, PPM, ...) are refused so that the
# documented set is what actually works.
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF"})
SUPPORTED_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"
MODES = ("RGB", "L")
RESIZE_POLICIES = ("pad", "crop", "stretch")


@dataclass
class ImageConfig:
    """How an image becomes a tensor; saved in checkpoints so that inference matches training.

    Args:
        size: ``(H, W)`` of the output.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (1 channel, grayscale).
        resize: ``"pad"`` (fit inside, pad the rest with ``fill``), ``"crop"`` (cover, centre crop)
            or ``"stretch"`` (resize to the size, ignoring the aspect ratio).
        max_pixels: largest accepted ``width * height`` of the decoded image.
        fill: padding value 0-255 (``"pad"`` only); 255 is white, which suits scores and line art.
        score_interline: for a model of score engravings, their staff-line spacing in pixels. Every
            image the model encodes (a query, a collection's picture) is then first brought into
            the engravings' form by :func:`xmr.media.score.conform_score`: a photo's page found,
            rectified and evenly lit, the staff scaled to this spacing, the systems set side by side
            as one line ``size[0]`` pixels high; an engraving already in that form is left as it
            is. ``None`` (the default): images are used as they come.

    Example::

        cfg = ImageConfig.from_dict({"size": [128, 512], "mode": "L", "resize": "pad"})
    """

    size: tuple[int, int] = (256, 256)
    mode: str = "RGB"
    resize: str = "pad"
    max_pixels: int = DEFAULT_MAX_PIXELS
    fill: int = 255
    score_interline: float | None = None

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"ImageConfig.size must be (H, W) with positive values, got {self.size!r}")
        self.size = size  # lists from JSON become a tuple
        if self.mode not in MODES:
            raise ConfigError(f"ImageConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"ImageConfig.resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.max_pixels <= 0:
            raise ConfigError(f"ImageConfig.max_pixels must be positive, got {self.max_pixels!r}")
        if not 0 <= int(self.fill) <= 255:
            raise ConfigError(f"ImageConfig.fill must be in 0..255, got {self.fill!r}")
        if self.score_interline is not None:
            spacing = self.score_interline
            if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not 2 <= spacing <= 64:
                raise ConfigError("ImageConfig.score_interline must be a staff-line spacing of 2-64 pixels, "
                                  f"got {self.score_interline!r}")
            self.score_interline = float(self.score_interline)

    @property
    def channels(self) -> int:
        """Channels of the output tensor."""
        return 3 if self.mode == "RGB" else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields (``size`` as a list; ``score_interline`` only when set,
        so that the configs, and fingerprints, of models without it are as they were)."""
        data = dataclasses.asdict(self)
        data["size"] = list(self.size)
        if data["score_interline"] is None:
            del data["score_interline"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageConfig:
        """Build from a dict such as :meth:`to_dict` wrote; unknown keys are an error (typos)."""
        return strict_from_dict(cls, data)


def load_image(
    src: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mode: str | None = None,
    max_aspect: float | None = None,
    notes: list[str] | None = None,
):
    """Decode and validate an image from an untrusted source.

    Args:
        src: a path (``str``/``Path``), the file's bytes, a binary file object, a ``PIL.Image.Image``,
            or an ``ndarray`` (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``; uint8 0-255, or float 0-1).
        max_pixels: largest accepted ``width * height``; checked before the pixels are decoded.
        mode: ``"RGB"`` or ``"L"`` to convert to; ``None`` keeps grayscale images ``"L"`` and makes
            everything else ``"RGB"``.
        max_aspect: largest accepted ratio of the longer side to the shorter (``None``: any);
            checked before the pixels are decoded.
        notes: a list to append what the user should know to (an animation's frames beyond the first).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``"RGB"`` or ``"L"``, upright (EXIF orientation applied),
        transparency composited onto white.

    Raises:
        InputError: undecodable, zero-size, over the pixel cap or the aspect limit, or an unsupported
            type or format.

    Example::

        img = load_image(open("photo.jpg", "rb").read(), max_pixels=20_000_000)
    """
    from PIL import Image, ImageOps

    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
    name = describe(src)
    if isinstance(src, Image.Image):
        img = src
        _check_size(img.size, name, max_pixels, max_aspect)
    elif isinstance(src, np.ndarray):
        img = _from_array(src, max_pixels=max_pixels, max_aspect=max_aspect)
    else:
        img = _open(src, name, max_pixels, max_aspect)
        if img.format not in SUPPORTED_FORMATS:
            raise InputError(f"unsupported image format {img.format} in {name}; use {SUPPORTED_NAMES}")
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
            img.seek(0)  # first frame of an animation
            img.load()
        except Exception as err:
            raise InputError(f"cannot decode {name} ({decoder_reason(err, src)}); the file may be damaged") \
                from None
        if frames > 1 and notes is not None:
            notes.append(f"{name} has {frames} frames, only the first is used")
    # A broken EXIF block should not make a good picture unusable.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    return _to_mode(img, mode)


def prepare_image(img: Any, cfg: ImageConfig):
    """Resize an image by the config's policy into a ``(C, H, W)`` float32 tensor in ``[0, 1]``.

    Args:
        img: a ``PIL.Image.Image`` (or anything :func:`load_image` accepts, which is loaded first
            with ``cfg.max_pixels``).
        cfg: target size, mode and resize policy.

    Example::

        x = prepare_image(load_image("score.png"), ImageConfig(size=(128, 512), mode="L"))  # (1, 128, 512)
    """
    import torch
    from PIL import Image

    if not isinstance(img, Image.Image) or img.mode not in MODES:
        img = load_image(img, max_pixels=cfg.max_pixels, mode=cfg.mode)
    elif img.mode != cfg.mode:
        img = img.convert(cfg.mode)
    out = resize_image(img, size=cfg.size, policy=cfg.resize, fill=cfg.fill)
    arr = np.asarray(out, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (H, W, C) -> (C, H, W)


def resize_image(img, *, size: tuple[int, int], policy: str = "pad", fill: int = 255):
    """Resize a PIL image to ``size = (H, W)`` by ``policy`` (``"pad"``, ``"crop"`` or ``"stretch"``).

    ``"pad"`` scales the image to fit inside and centres it on a ``fill`` canvas; ``"crop"`` scales
    it to cover the size and cuts the centre; ``"stretch"`` ignores the aspect ratio.

    Example::

        thumb = resize_image(img, size=(64, 64), policy="crop")
    """
    from PIL import Image

    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, got {policy!r}")
    out_h, out_w = size
    w, h = img.size
    resample = Image.Resampling.BICUBIC
    if policy == "stretch":
        return img.resize((out_w, out_h), resample)
    if policy == "crop":
        # Cut the centre region of the target's aspect ratio first, then resize it: nothing from
        # outside the kept region bleeds in through the resampling filter.
        if w * out_h > h * out_w:  # wider than the target
            box_w, box_h = max(1, round(h * out_w / out_h)), h
        else:
            box_w, box_h = w, max(1, round(w * out_h / out_w))
        left, top = (w - box_w) // 2, (h - box_h) // 2
        return img.crop((left, top, left + box_w, top + box_h)).resize((out_w, out_h), resample)
    scale = min(out_w / w, out_h / h)
    new_w, new_h = max(1, min(out_w, round(w * scale))), max(1, min(out_h, round(h * scale)))
    scaled = img.resize((new_w, new_h), resample)
    colour = (fill,) * 3 if img.mode == "RGB" else fill
    canvas = Image.new(img.mode, (out_w, out_h), colour)
    canvas.paste(scaled, ((out_w - new_w) // 2, (out_h - new_h) // 2))
    return canvas


# --------------------------------------------------------------------------- helpers


def _check_size(size: tuple[int, int], name: str, max_pixels: int, max_aspect: float | None = None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InputError(f"{name} has zero size ({w}x{h} pixels)")
    if w * h > max_pixels:
        raise InputError(
            f"{name} is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; downscale it first"
        )
    if max_aspect is not None and max(w, h) > max_aspect * min(w, h):
        ratio = f"{max(w, h) / min(w, h):.0f}:1" if w >= h else f"1:{h / w:.0f}"
        raise InputError(
            f"{name} is {w}x{h} pixels, an aspect ratio of {ratio} (at most {max_aspect:g}:1 either way); "
            "crop it to the part to search with"
        )


def _open(src: Any, name: str, max_pixels: int, max_aspect: float | None = None):
    """Open (header only) and check the size before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    obj = open_source(src, "image", accepts="a file path, the file's bytes, a PIL image or an array")
    try:
        with warnings.catch_warnings():
            # Our own cap (below) replaces Pillow's global bomb warning; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(obj)
    except Image.DecompressionBombError:
        raise InputError(f"{name} has too many pixels (over {max_pixels:,}); downscale it first") from None
    except UnidentifiedImageError:
        raise InputError(f"cannot decode {name} as an image; use {SUPPORTED_NAMES}") from None
    except Exception as err:
        raise InputError(f"cannot decode {name} as an image ({decoder_reason(err, src)})") from None
    _check_size(img.size, name, max_pixels, max_aspect)
    return img


def _from_array(arr: np.ndarray, *, max_pixels: int, max_aspect: float | None = None):
    from PIL import Image

    if arr.dtype.kind not in "uif" and arr.dtype != np.bool_:
        raise InputError(f"unsupported image array type {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]), "image", max_pixels, max_aspect)
    if arr.dtype.kind == "f" or arr.dtype == np.bool_:
        values = arr.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InputError("image array contains NaN or infinite values")
        arr = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InputError(f"integer image array must hold 0-255, got {arr.min()}..{arr.max()}")
        arr = arr.astype(np.uint8)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr.ndim if arr.ndim == 2 else arr.shape[2]]
    return Image.fromarray(np.ascontiguousarray(arr), mode=mode)


def _to_mode(img, mode: str | None):
    """Flatten transparency onto white and convert to RGB or L (16-bit and float images scaled to 8-bit)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    gray_source = img.mode in ("L", "1", "LA", "La")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = mode or ("L" if gray_source else "RGB")
    if img.mode == target:
        return img
    try:
        return img.convert(target)
    except Exception:  # exotic modes (LAB, HSV, ...) that Pillow cannot convert
        raise InputError(f"unsupported image mode {img.mode}; use an RGB or grayscale image") from None
