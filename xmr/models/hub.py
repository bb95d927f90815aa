"""Pretrained audio and image towers from the Hugging Face hub, with their own preprocessing.

Tower kinds (``TowerConfig(kind=..., arch=..., backbone=SOURCE)``; ``SOURCE`` is a local folder or
a hub id, loaded with ``from_pretrained``):

| kind | arch | transformers class | output |
| --- | --- | --- | --- |
| ``hf_audio`` | ``clap`` | ``ClapAudioModelWithProjection`` | ``audio_embeds`` (CLAP's shared space) |
| ``hf_audio`` | ``ast`` | ``ASTModel`` | ``pooler_output`` (mean of the [CLS] and distillation tokens) |
| ``hf_audio`` | ``auto`` | ``AutoModel`` (wav2vec2, HuBERT, ...) | mean of ``last_hidden_state`` over time |
| ``hf_image`` | ``clip`` | ``CLIPVisionModelWithProjection`` | ``image_embeds`` (CLIP's shared space) |
| ``hf_image`` | ``siglip`` | ``SiglipVisionModel`` | ``pooler_output`` (SigLIP's shared space) |

Preprocessing travels with the tower, as timm's ``PretrainedCfg``: when a model is created,
:func:`resolve_hub_towers` reads the source's feature extractor or image processor into a
:class:`HubAudioPreprocessing` / :class:`HubImagePreprocessing` (kept in ``TowerConfig.preprocessing``)
and its architecture config (``TowerConfig.architecture``), and sets the model's sample rate, audio
window and image size from them. A checkpoint therefore rebuilds the tower and its preprocessing
from its own ``config.json`` and weights, without the source (:func:`skeleton_config`).

Audio towers take ``(B, T)`` waveforms at the model's rate and compute their own features with the
feature extractor (CLAP's log-mel, AST's Kaldi filterbank, wav2vec2's normalisation); image towers
take xmr's ``(B, 3, H, W)`` images in ``[0, 1]`` (resized by the processor's policy: CLIP's
shortest-edge resize + centre crop, SigLIP's stretch) and normalise them with its mean and std.

Example:
    >>> from xmr.models import create_model
    >>> model = create_model("clap-zeroshot")  # doctest: +SKIP  (downloads laion/clap-htsat-unfused)
    >>> model.encode("text", ["a slow piano piece"]).shape  # doctest: +SKIP
    (1, 512)
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmr.errors import InputError, MissingAssetError
from xmr.models.config import ModelConfig, TowerConfig
from xmr.models.towers import register_tower

AUDIO_ARCHS = {"clap": "ClapAudioModelWithProjection", "ast": "ASTModel", "auto": "AutoModel"}
IMAGE_ARCHS = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel"}
HUB_KINDS = ("hf_audio", "hf_image")

# Which text archs share a space with which audio/image archs (a zero-shot model needs both towers
# from the same source with identity heads).
SHARED_SPACE_FAMILY = {
    ("hf_audio", "clap"): "clap",
    ("hf_image", "clip"): "clip",
    ("hf_image", "siglip"): "siglip",
    ("hf_text", "clap_text_proj"): "clap",
    ("hf_text", "clip_text_proj"): "clip",
    ("hf_text", "siglip_text"): "siglip",
}


def _plain(value: Any) -> Any:
    """JSON-able copy (tuples -> lists, numpy scalars -> numbers; other objects dropped)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else None))


@dataclass
class HubAudioPreprocessing:
    """A transformers feature extractor, by class name and settings (saved with the checkpoint).

    Args:
        processor: the feature extractor class (``"ClapFeatureExtractor"``, ``"ASTFeatureExtractor"``,
            ``"Wav2Vec2FeatureExtractor"``).
        sample_rate: the waveform rate it expects.
        window_seconds: the longest input it keeps (CLAP ``max_length_s``; AST ``max_length`` frames
            of 10 ms), or ``None`` (wav2vec2: any length).
        settings: its other settings (mel bins, FFT window, hop, frequency range, normalisation, ...).
    """

    processor: str
    sample_rate: int
    window_seconds: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_processor(cls, fe: Any) -> HubAudioPreprocessing:
        settings = _plain(
            {k: v for k, v in fe.to_dict().items() if k not in ("feature_extractor_type", "processor_class")}
        )
        settings = {k: v for k, v in settings.items() if v is not None or k == "top_db"}
        name = type(fe).__name__
        window = None
        if "max_length_s" in settings:
            window = float(settings["max_length_s"])
        elif name == "ASTFeatureExtractor":
            window = int(settings.get("max_length", 1024)) * 0.01  # Kaldi frames shift 10 ms
        return cls(
            processor=name, sample_rate=int(fe.sampling_rate), window_seconds=window, settings=settings
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubAudioPreprocessing:
        return cls(**data)

    def build(self):
        """The feature extractor itself."""
        import transformers

        fe_cls = getattr(transformers, self.processor, None)
        if fe_cls is None:
            raise InputError(f"unknown feature extractor {self.processor!r}")
        return fe_cls(**{**self.settings, "sampling_rate": self.sample_rate})


@dataclass
class HubImagePreprocessing:
    """An image processor's resize policy and normalisation (saved with the checkpoint).

    Args:
        processor: the image processor class (``"CLIPImageProcessor"``, ``"SiglipImageProcessor"``).
        size: ``(H, W)`` the tower sees.
        resize: xmr's resize policy equal to the processor's: ``"crop"`` (shortest edge + centre crop)
            or ``"stretch"`` (resize to the size).
        mean / std: per-channel normalisation of ``[0, 1]`` pixels.
        settings: the processor's other settings (informative).
    """

    processor: str
    size: tuple[int, int] = (224, 224)
    resize: str = "crop"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_processor(cls, ip: Any) -> HubImagePreprocessing:
        d = ip.to_dict()
        crop = d.get("do_center_crop") and d.get("crop_size")
        size = crop or d.get("size") or {}
        if "height" in size:
            hw = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            hw = (int(size["shortest_edge"]), int(size["shortest_edge"]))
        else:
            raise InputError(f"cannot read an image size from {type(ip).__name__}: {size}")
        mean = tuple(float(x) for x in (d.get("image_mean") or (0.0, 0.0, 0.0)))
        std = tuple(float(x) for x in (d.get("image_std") or (1.0, 1.0, 1.0)))
        if not d.get("do_normalize", True):
            mean, std = (0.0,) * len(mean), (1.0,) * len(std)
        settings = _plain(
            {k: v for k, v in d.items() if k not in ("image_processor_type", "processor_class")}
        )
        return cls(
            processor=type(ip).__name__,
            size=hw,
            resize="crop" if crop else "stretch",
            mean=mean,
            std=std,
            settings=settings,
        )

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubImagePreprocessing:
        data = dict(data)
        for k in ("size", "mean", "std"):
            if k in data:
                data[k] = tuple(data[k])
        return cls(**data)


# ---------------------------------------------------------------------------- loading


def _is_local(source: str) -> bool:
    return Path(source).is_dir()


@contextmanager
def _quiet_transformers():
    """Loading a local folder is instant: no progress bars or load reports on the console."""
    import transformers

    hf_logging = transformers.utils.logging
    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _model_class(cfg: TowerConfig):
    import transformers

    archs = AUDIO_ARCHS if cfg.kind == "hf_audio" else IMAGE_ARCHS
    if cfg.arch not in archs:
        raise InputError(f"unknown {cfg.kind} arch {cfg.arch!r}; known: {', '.join(archs)}")
    return getattr(transformers, archs[cfg.arch])


def _load_processor(cfg: TowerConfig):
    import transformers

    auto = transformers.AutoFeatureExtractor if cfg.kind == "hf_audio" else transformers.AutoImageProcessor
    try:
        with _quiet_transformers():
            return auto.from_pretrained(cfg.backbone, local_files_only=_is_local(cfg.backbone))
    except (OSError, ValueError) as exc:
        what = "feature extractor" if cfg.kind == "hf_audio" else "image processor"
        raise MissingAssetError(f"cannot load the {what} of {cfg.backbone!r}: {exc}") from exc


def _load_architecture(cfg: TowerConfig) -> dict[str, Any]:
    """The architecture config of the tower's class (the audio/vision part of a full CLAP/CLIP config)."""
    model_cls = _model_class(cfg)
    try:
        with _quiet_transformers():
            if cfg.arch == "auto":
                import transformers

                arch = transformers.AutoConfig.from_pretrained(
                    cfg.backbone, local_files_only=_is_local(cfg.backbone)
                )
            else:
                arch = model_cls.config_class.from_pretrained(
                    cfg.backbone, local_files_only=_is_local(cfg.backbone)
                )
    except (OSError, ValueError) as exc:
        raise MissingAssetError(f"cannot load the config of {cfg.backbone!r}: {exc}") from exc
    return _plain(arch.to_dict())


def resolve_hub_towers(cfg: ModelConfig) -> ModelConfig:
    """Fill in the preprocessing and architecture of every hub tower from its source, and set the
    model's sample rate / audio window / image size from them (a copy; other towers untouched).

    Args:
        cfg: a model config (hub towers may lack ``preprocessing``/``architecture``).

    Example:
        >>> cfg = resolve_hub_towers(get_model_config("clap-text"))  # doctest: +SKIP
        >>> cfg.sample_rate  # doctest: +SKIP
        48000
    """
    towers = {m: cfg.tower(m) for m in cfg.modalities if cfg.tower(m).kind in HUB_KINDS}
    if not towers:
        return cfg
    cfg = dataclasses.replace(cfg)
    for m, tower in towers.items():
        if tower.preprocessing is None or tower.architecture is None:
            tower = dataclasses.replace(tower)
            if tower.preprocessing is None:
                proc = _load_processor(tower)
                pre = (
                    HubAudioPreprocessing if tower.kind == "hf_audio" else HubImagePreprocessing
                ).from_processor(proc)
                tower.preprocessing = pre.to_dict()
            if tower.architecture is None:
                tower.architecture = _load_architecture(tower)
            if (
                tower.kind == "hf_audio"
                and tower.arch == "clap"
                and not tower.architecture.get("enable_fusion")
            ):
                # an unfused CLAP takes one mel channel: never the 4-channel "fusion" features
                tower.preprocessing["settings"]["truncation"] = "rand_trunc"
            setattr(cfg, m, tower)
        if tower.kind == "hf_audio":
            pre = HubAudioPreprocessing.from_dict(tower.preprocessing)
            cfg.sample_rate = pre.sample_rate
            cfg.spectrogram = dataclasses.replace(cfg.spectrogram, sample_rate=pre.sample_rate)
            if pre.window_seconds:
                cfg.audio_window_seconds = float(pre.window_seconds)
        else:
            pre = HubImagePreprocessing.from_dict(tower.preprocessing)
            cfg.image_preprocessing = dataclasses.replace(
                cfg.image_preprocessing, size=tuple(pre.size), mode="RGB", resize=pre.resize
            )
    return ModelConfig.from_dict(cfg.to_dict())


def skeleton_config(cfg: ModelConfig) -> ModelConfig:
    """The config to rebuild a checkpoint's towers without their sources: hub and timm towers whose
    weights the checkpoint stores are built from their recorded architecture (no download)."""
    cfg = dataclasses.replace(cfg)
    for m in cfg.modalities:
        tower = cfg.tower(m)
        if (
            tower.store_weights
            and tower.pretrained
            and (tower.kind == "timm" or (tower.kind in HUB_KINDS and tower.architecture is not None))
        ):
            setattr(cfg, m, dataclasses.replace(tower, pretrained=False))
    return cfg


def _build_backbone(cfg: TowerConfig):
    model_cls = _model_class(cfg)
    with _quiet_transformers():
        if cfg.pretrained:
            try:
                return model_cls.from_pretrained(
                    cfg.backbone, local_files_only=_is_local(cfg.backbone), **cfg.options
                )
            except OSError as exc:
                raise MissingAssetError(f"cannot load {cfg.kind} tower {cfg.backbone!r}: {exc}") from exc
        if cfg.architecture is None:
            raise InputError(
                f"{cfg.kind} tower {cfg.backbone!r}: needs pretrained=True (weights from the "
                "source) or a recorded architecture (a checkpoint's config)"
            )
        import transformers

        arch = dict(cfg.architecture)
        if cfg.arch == "auto":
            config = transformers.AutoConfig.for_model(**arch)
            return transformers.AutoModel.from_config(config)
        return model_cls(model_cls.config_class.from_dict(arch))


def _check_resolved(cfg: TowerConfig) -> dict[str, Any]:
    if cfg.preprocessing is None:
        raise InputError(
            f"{cfg.kind} tower {cfg.backbone!r} has no preprocessing: build the model with "
            "xmr.models.create_model (which reads it from the source)"
        )
    return cfg.preprocessing


@register_tower("hf_audio")
class HFAudioTower(nn.Module):
    """A transformers audio encoder over waveforms ``(B, T)``; features come from its feature extractor."""

    takes_waveform = True

    def __init__(self, cfg: TowerConfig, *, in_chans: int = 0) -> None:
        super().__init__()
        self.pre = HubAudioPreprocessing.from_dict(_check_resolved(cfg))
        self.arch = cfg.arch
        self.backbone = _build_backbone(cfg)
        self.extractor = self.pre.build()
        conf = self.backbone.config
        self.out_dim = int(conf.projection_dim if cfg.arch == "clap" else conf.hidden_size)

    def features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature extractor's tensors for a ``(B, T)`` waveform batch (on the wave's device)."""
        waves = [w for w in wave.detach().float().cpu().numpy().astype(np.float32)]
        out = self.extractor(waves, sampling_rate=self.pre.sample_rate, return_tensors="pt")
        keep = {
            "clap": ("input_features", "is_longer"),
            "ast": ("input_values",),
            "auto": ("input_values", "attention_mask"),
        }[self.arch]
        return {k: out[k].to(wave.device) for k in keep if k in out}

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # (B, T) waveform -> (B, F)
        feats = self.features(wave)
        if self.arch == "clap":
            return self.backbone(**feats).audio_embeds  # (B, projection_dim)
        if self.arch == "ast":
            return self.backbone(**feats).pooler_output  # (B, hidden)
        hidden = self.backbone(input_values=feats["input_values"]).last_hidden_state  # (B, frames, hidden)
        return hidden.mean(dim=1)


@register_tower("hf_image")
class HFImageTower(nn.Module):
    """A transformers vision encoder over xmr's ``(B, 3, H, W)`` images in ``[0, 1]``."""

    def __init__(self, cfg: TowerConfig, *, in_chans: int = 3) -> None:
        super().__init__()
        self.pre = HubImagePreprocessing.from_dict(_check_resolved(cfg))
        if in_chans != 3:
            raise InputError(f"{cfg.kind} towers take RGB images (image_preprocessing.mode RGB)")
        self.arch = cfg.arch
        self.backbone = _build_backbone(cfg)
        self.register_buffer("mean", torch.tensor(self.pre.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.pre.std).view(1, -1, 1, 1), persistent=False)
        conf = self.backbone.config
        self.out_dim = int(conf.projection_dim if cfg.arch == "clip" else conf.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1] -> (B, F)
        pixels = (x - self.mean) / self.std
        out = self.backbone(pixel_values=pixels)
        return out.image_embeds if self.arch == "clip" else out.pooler_output
