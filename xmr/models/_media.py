"""The preprocessing the models use, named once: everything comes from :mod:`xmr.media`."""

from xmr.media.audio import load_audio
from xmr.media.features import SpectrogramConfig, compute_features
from xmr.media.image import ImageConfig, load_image, prepare_image
from xmr.media.score import read_score_page
from xmr.media.text import normalize_text

__all__ = [
    "ImageConfig",
    "SpectrogramConfig",
    "compute_features",
    "load_audio",
    "load_image",
    "normalize_text",
    "prepare_image",
    "read_score_page",
]
