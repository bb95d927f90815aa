"""Models by name: registered functions return a :class:`ModelConfig`; ``create_model`` builds it.

Variants are config deltas, not copied classes (as timm's ``@register_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xmr.errors import InputError
from xmr.models._media import ImageConfig, SpectrogramConfig
from xmr.models.config import TEXT_SOURCE_PACKAGE, ModelConfig, TowerConfig

MODELS: dict[str, Callable[[], ModelConfig]] = {}


def register_model(fn: Callable[[], ModelConfig] | None = None, *, name: str | None = None):
    """Decorator: register a function returning a :class:`ModelConfig` under its name
    (underscores become dashes: ``demo_small`` -> ``"demo-small"``)."""

    def deco(f: Callable[[], ModelConfig]):
        key = name or f.__name__.replace("_", "-")
        MODELS[key] = f
        return f

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config registered under ``name`` with dotted-key overrides (``audio.backbone="..."``)."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    cfg = MODELS[name]()
    cfg.name = name
    return cfg.with_overrides(**overrides) if overrides else cfg


def create_model(name_or_cfg: str | ModelConfig | dict, **overrides: Any):
    """Build an untrained :class:`~xmr.models.model.XmrModel` from a registry name, a config or a dict.

    Args:
        name_or_cfg: a registered name (see :func:`list_models`), a :class:`ModelConfig`, or its dict.
        overrides: dotted-key config overrides, e.g. ``create_model("demo", embed_dim=128)``.

    Example:
        >>> model = create_model("demo", **{"audio.backbone": "efficientnet_b0"})  # doctest: +SKIP
    """
    from xmr.models.model import XmrModel

    if isinstance(name_or_cfg, str):
        cfg = get_model_config(name_or_cfg, **overrides)
    elif isinstance(name_or_cfg, ModelConfig):
        cfg = name_or_cfg.with_overrides(**overrides) if overrides else name_or_cfg
    elif isinstance(name_or_cfg, dict):
        cfg = ModelConfig.from_dict(name_or_cfg)
        cfg = cfg.with_overrides(**overrides) if overrides else cfg
    else:
        raise InputError(
            f"create_model takes a name, a ModelConfig or a dict, not {type(name_or_cfg).__name__}"
        )
    from xmr.models.hub import resolve_hub_towers

    return XmrModel(resolve_hub_towers(cfg))  # hub towers: preprocessing read from their source


# ---- registered models ---------------------------------------------------------------------------

_LOGMEL = dict(sample_rate=16000, kind="logmel", n_fft=1024, win_length=1024, hop_length=320, n_mels=64)
_SCORE_IMAGE = dict(size=(128, 384), mode="L", resize="pad")


def _minilm(frozen: bool = True) -> TowerConfig:
    # The offline default; frozen and not stored in checkpoints (the weights ship in the package).
    return TowerConfig(
        kind="hf_text",
        backbone=TEXT_SOURCE_PACKAGE,
        pooling="mean",
        head="mlp",
        frozen=frozen,
        store_weights=not frozen,
    )


def _demo(backbone: str, **kw: Any) -> ModelConfig:
    return ModelConfig(
        embed_dim=256,
        audio=TowerConfig(kind="timm", backbone=backbone, head="linear"),
        image=TowerConfig(kind="timm", backbone=backbone, head="linear"),
        text=_minilm(),
        spectrogram=SpectrogramConfig(**_LOGMEL),
        image_preprocessing=ImageConfig(**_SCORE_IMAGE),
        sample_rate=16000,
        audio_window_seconds=10.0,
        text_max_length=64,
        **kw,
    )


@register_model
def demo() -> ModelConfig:
    """Audio (log-mel) and score-image MobileNetV3-L towers + frozen all-MiniLM-L6-v2 text; ~37 MB stored."""
    return _demo("mobilenetv3_large_100")


@register_model
def demo_small() -> ModelConfig:
    """As ``demo`` with MobileNetV3-S towers (fastest on a CPU; ~14 MB stored)."""
    return _demo("mobilenetv3_small_100")


@register_model
def demo_effnet() -> ModelConfig:
    """As ``demo`` with EfficientNet-B0 towers (~36 MB stored)."""
    return _demo("efficientnet_b0")


@register_model
def demo_resnet18() -> ModelConfig:
    """As ``demo`` with ResNet-18 towers (~90 MB stored: above the bundled-checkpoint budget)."""
    return _demo("resnet18")


@register_model
def panns_cnn10_minilm() -> ModelConfig:
    """3CMLF-style audio-text model (Chao et al. 2022, Sec. II-C/D): PANNs CNN10 on 64-bin log-mel
    (window 1024, hop 320) with an MLP head, MiniLM text with an MLP head (trainable), image
    MobileNetV3-L."""
    cfg = _demo("mobilenetv3_large_100")
    cfg.audio = TowerConfig(kind="panns", backbone="cnn10", head="mlp")
    cfg.text = _minilm(frozen=False)
    return cfg


@register_model
def scfem_stft() -> ModelConfig:
    """The inputs of Nakatsuka et al. 2023 (Sec. 4.1.2): complex STFT (real/imag channels, 1025 bins,
    hop 512; ~3 s crops at 44.1 kHz) and 256x256 RGB images into EfficientNet-B0 towers, D = 256."""
    return ModelConfig(
        embed_dim=256,
        audio=TowerConfig(kind="timm", backbone="efficientnet_b0"),
        image=TowerConfig(kind="timm", backbone="efficientnet_b0"),
        text=_minilm(),
        spectrogram=SpectrogramConfig(
            sample_rate=44100, kind="stft", n_fft=2048, win_length=2048, hop_length=512, n_mels=64
        ),
        image_preprocessing=ImageConfig(size=(256, 256), mode="RGB", resize="stretch"),
        sample_rate=44100,
        audio_window_seconds=3.0,
    )


# Pitch-keeping sequence towers (xmr.models.sequence). The log-frequency front end of Dorfer et al.
# 2018 (16 bins per octave, 30 Hz to 6 kHz; n_fft 4096 at 16 kHz so that the low bins are FFT bins
# 3.9 Hz apart) at a 20 ms hop; score images at the corpus's own height, 256 px, where the staff
# lines of its engravings are a median 6.3 px apart (5th percentile 5.2 px, 99.8% of 1,016 measured
# images at least 4 px; the two below are six-staff scores), the aspect ratio kept and the width
# padded up to 1,024 px (98% of the engravings fit at full height). Pictures from elsewhere (phone
# photos, other engravers' pages of several systems) are conformed to that form: one line of music
# with the staff lines 6.3 px apart (xmr.media.score; the corpus's own engravings pass unchanged).
_LOGFREQ = dict(sample_rate=16000, kind="logfreq", n_fft=4096, win_length=4096, hop_length=320,
                f_min=30.0, f_max=6000.0, bins_per_octave=16)
_SEQ_IMAGE = dict(size=(256, 1024), mode="L", resize="pad", score_interline=6.3)


# Conv widths per block (each block ends in a 2x2 max-pool). Dorfer et al. 2018's 24-24, 48-48,
# 96-96, 96-96 runs at about 0.4 score images/s (fwd + bwd, 256x400 px) on one shared CPU thread;
# these narrower blocks (one conv at full resolution) at about 6/s. The GPU recipe takes Dorfer's.
SEQ_CPU_BLOCKS = [[8], [16, 16], [32, 32], [64, 64]]


def _seq_tower(rows: int, pooling: str, **options: Any) -> TowerConfig:
    return TowerConfig(kind="seq_cnn", backbone="vgg", pooling=pooling, head="linear",
                       options={"rows": int(rows), "blocks": SEQ_CPU_BLOCKS, **options})


def _demo_seq(pooling: str = "gru", *, image_stem: int = 1, **spectrogram: Any) -> ModelConfig:
    spec = SpectrogramConfig(**{**_LOGFREQ, **spectrogram})
    image = ImageConfig(**_SEQ_IMAGE)
    image_options = {"stem_stride": image_stem} if image_stem > 1 else {}
    return ModelConfig(
        embed_dim=256,
        audio=_seq_tower(spec.n_bins, pooling),
        image=_seq_tower(image.size[0], pooling, **image_options),
        text=_minilm(),
        spectrogram=spec,
        image_preprocessing=image,
        sample_rate=16000,
        audio_window_seconds=10.0,
        text_max_length=64,
    )


@register_model
def demo_seq() -> ModelConfig:
    """Towers that keep pitch and read in order: VGG-style CNNs (Dorfer et al. 2018) on a 16-bin/
    octave log-frequency spectrogram (20 ms hop) and on 256-px-high score images (width padded, up
    to 1,024 px), height folded into channels, a bidirectional GRU over time / left to right
    (Carvalho & Widmer 2023); frozen all-MiniLM-L6-v2 text; 0.4-0.6 M weights per media tower."""
    return _demo_seq("gru")


@register_model
def demo_seq_attn() -> ModelConfig:
    """As ``demo-seq`` with masked attention pooling over the sequence instead of the GRU."""
    return _demo_seq("attention")


@register_model
def demo_seq_cqt() -> ModelConfig:
    """As ``demo-seq`` with nnAudio's constant-Q transform (16 bins per octave, 30 Hz to 6 kHz)
    as the audio front end."""
    return _demo_seq("gru", kind="cqt")


@register_model
def demo_seq_lite() -> ModelConfig:
    """``demo-seq`` at about a fifth of its CPU cost, the 2-core demo recipe: the score tower's first
    convolution has stride 2 (it still reads the 256-px image, staff lines about 6 px apart, and
    everything after it works at 128 px), and the spectrogram hop is 40 ms instead of 20."""
    return _demo_seq("gru", image_stem=2, hop_length=640)


def _online_text(backbone: str, arch: str, pooling: str) -> ModelConfig:
    cfg = _demo("mobilenetv3_large_100")
    cfg.text = TowerConfig(kind="hf_text", backbone=backbone, arch=arch, pooling=pooling, head="mlp")
    return cfg


@register_model
def demo_bert() -> ModelConfig:
    """Online: BERT-base ([CLS] pooling as Chao et al. 2022, Sec. II-D) from the hub, trainable, stored."""
    return _online_text("bert-base-uncased", "auto", "cls")


@register_model
def demo_clip_text() -> ModelConfig:
    """Online: the text tower of CLIP ViT-B/32 from the hub (end-of-text pooled output)."""
    return _online_text("openai/clip-vit-base-patch32", "clip_text", "pooler")


@register_model
def demo_clap_text() -> ModelConfig:
    """Online: the text tower of LAION CLAP from the hub (pooled output)."""
    return _online_text("laion/clap-htsat-unfused", "clap_text", "pooler")


# ---- pretrained hub towers (online users: weights download on first use) ------------------------

CLAP_SOURCE = "laion/clap-htsat-unfused"
CLAP_MUSIC_SOURCE = "laion/larger_clap_music"
CLIP_SOURCE = "openai/clip-vit-base-patch32"
SIGLIP_SOURCE = "google/siglip-base-patch16-224"


def _hub(kind: str, arch: str, source: str, *, head: str, frozen: bool = True) -> TowerConfig:
    return TowerConfig(kind=kind, backbone=source, arch=arch, pretrained=True, head=head, frozen=frozen)


def _hub_model(embed_dim: int, **towers: TowerConfig) -> ModelConfig:
    # Sample rate, audio window and image size are taken from the towers' processors on creation.
    return ModelConfig(embed_dim=embed_dim, image_preprocessing=ImageConfig(size=(224, 224), mode="RGB",
                                                                            resize="crop"), **towers)


@register_model
def clap_zeroshot() -> ModelConfig:
    """Zero-shot audio <-> text: LAION CLAP's audio and text towers in their own 512-d space (no training)."""
    return _hub_model(512, audio=_hub("hf_audio", "clap", CLAP_SOURCE, head="identity"),
                      text=_hub("hf_text", "clap_text_proj", CLAP_SOURCE, head="identity"))


@register_model
def clip_zeroshot() -> ModelConfig:
    """Zero-shot image <-> text: CLIP ViT-B/32's vision and text towers in their own 512-d space."""
    return _hub_model(512, image=_hub("hf_image", "clip", CLIP_SOURCE, head="identity"),
                      text=_hub("hf_text", "clip_text_proj", CLIP_SOURCE, head="identity"))


@register_model
def siglip_zeroshot() -> ModelConfig:
    """Zero-shot image <-> text: SigLIP base/16's vision and text towers in their own 768-d space."""
    return _hub_model(768, image=_hub("hf_image", "siglip", SIGLIP_SOURCE, head="identity"),
                      text=_hub("hf_text", "siglip_text", SIGLIP_SOURCE, head="identity"))


@register_model
def clap_clip() -> ModelConfig:
    """Music <-> cover art <-> description: LAION CLAP music audio + text (frozen, their shared 512-d
    space kept: audio <-> text works untrained) and a frozen CLIP ViT-B/32 vision tower whose linear
    head is trained into that space (as ImageBind binds a modality to a frozen space)."""
    return _hub_model(512, audio=_hub("hf_audio", "clap", CLAP_MUSIC_SOURCE, head="identity"),
                      image=_hub("hf_image", "clip", CLIP_SOURCE, head="linear"),
                      text=_hub("hf_text", "clap_text_proj", CLAP_MUSIC_SOURCE, head="identity"))


@register_model
def clap_text() -> ModelConfig:
    """Audio <-> text (3CMLF's task) on LAION CLAP towers, frozen, with trained MLP heads into a 512-d
    space (LiT-style; ``model.audio.frozen=false`` and ``optim.backbone_lr_scale`` to fine-tune)."""
    return _hub_model(512, audio=_hub("hf_audio", "clap", CLAP_SOURCE, head="mlp"),
                      text=_hub("hf_text", "clap_text_proj", CLAP_SOURCE, head="mlp"))


@register_model
def ast_minilm() -> ModelConfig:
    """Audio <-> text with an AudioSet AST (frozen, trained linear head) and the packaged MiniLM."""
    return _hub_model(256, audio=_hub("hf_audio", "ast", "MIT/ast-finetuned-audioset-10-10-0.4593",
                                      head="linear"), text=_minilm())
