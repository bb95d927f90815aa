"""Typed training configuration, loaded from YAML with ``--set key=value`` overrides.

A config file has five sections (all optional except ``data.manifest``)::

    seed: 0
    model: {name: tiny}            # passed to xmr.models.create_model (a registered name + overrides)
    loss: {name: infonce}          # passed to xmr.train.losses.build_loss
    curriculum: null               # passed to xmr.train.curriculum (3CMLF), or null for random batches
    data: {manifest: ..., batch_size: 32, ...}
    optim: {lr: 1e-3, warmup_steps: 100, ...}
    train: {steps: 1000, eval_every: 200, ...}

``model``, ``loss`` and ``curriculum`` are free-form mappings owned by the code that builds them;
``data``, ``optim`` and ``train`` are the dataclasses below, so that a typo in a key is an error
rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmr.config import check_keys, strict_from_dict
from xmr.errors import ConfigError, InputError


@dataclass
class DataConfig:
    """Where the items come from and how a training batch is made.

    Args:
        manifest: manifest file (CSV/JSONL/Parquet) with id, split, audio, image, caption.
        train_split / val_split: split names used for training and for the evaluation hook.
        modalities: modalities to train on (a subset of audio, image, text).
        batch_size: the *global* batch size (summed over processes and accumulation sub-batches).
        caption_choice: "random" picks one of an item's captions per step, "first" always the first.
        random_crop: random audio crops in training (Nakatsuka et al. 2023); otherwise the centre crop.
        affine: random affine augmentation of images (Nakatsuka et al. 2023, Sec. 4.1.2: rotation
            ±25°, translation 0.15, scale 0.75-1.25).
        cache_dir: folder for decoded/precomputed features (npy), reused across runs; default
            ``<out>/cache``.
        positive_groups: "caption": items of a batch with the same caption string are positives of
            each other, never negatives (multi-positive masking); "none": only the item itself.
        span_prob: probability that a training item is cut to an aligned span of bars instead of
            the whole excerpt (needs the manifest's bar alignment; items without one stay whole):
            the audio and the image are cut at the same bars.
        span_min_bars / span_max_bars: length of a span in bars (at least 2); only spans whose
            audio fits the audio window are drawn.
        augment: real-input augmentation (:func:`xmr.media.augment.build_augment`): a preset name
            (``"real"``: recordings and phone photos; ``"audio"``/``"image"``: one modality only) or
            a mapping ``{name, audio: {p_noise: 0.5, ...}, image: {...}}`` of per-transform
            probabilities and ranges; ``None`` (the default): off.
        views: training views (``views.parquet`` beside the manifest: another soundfont, another
            engraving; :mod:`xmr.train.views`) instead of an item's main files, drawn per modality
            and per (seed, step, item): ``true`` uniform among the main file and the item's views,
            a number ``p`` a view with probability ``p``, ``false`` (the default) never.
        build_if_missing: ``"synthetic"``: write a synthetic collection
            (:func:`xmr.data.synthetic.write_synthetic_collection`) at ``manifest`` when there is
            none, so that a smoke config trains on a fresh clone; ``None``: a missing manifest is an error.
        max_items: use at most this many training items (smoke runs).
        val_max_items: evaluate on at most this many validation items.
    """

    manifest: str = ""
    train_split: str = "train"
    val_split: str = "val"
    modalities: list[str] = field(default_factory=lambda: ["audio", "image", "text"])
    batch_size: int = 32
    caption_choice: str = "random"
    random_crop: bool = True
    affine: bool = False
    affine_degrees: float = 25.0
    affine_translate: float = 0.15
    affine_scale: list[float] = field(default_factory=lambda: [0.75, 1.25])
    positive_groups: str = "caption"
    span_prob: float = 0.0
    span_min_bars: int = 2
    span_max_bars: int = 4
    augment: str | dict[str, Any] | None = None
    views: bool | float = False
    cache_dir: str | None = None
    build_if_missing: str | None = None
    max_items: int | None = None
    val_max_items: int | None = 1000
    loader_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``lr * min_lr_ratio``.

    Norm weights, biases, temperatures (any parameter with fewer than 2 dimensions or a name
    containing ``temperature``/``logit_scale``) get no weight decay, as CLIP training does.
    ``backbone_lr_scale`` multiplies the learning rate of the towers' backbones (fine-tuning
    pretrained towers below the rate of the freshly initialised heads; 1 = the same rate).
    """

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    clip_grad: float | None = 1.0
    backbone_lr_scale: float = 1.0


@dataclass
class LoopConfig:
    """Length of the run and what happens along the way.

    Args:
        steps: optimizer steps.
        accum_steps: sub-batches per step; all sub-batches stay negatives of each other (GradCache).
        amp: "off", "bf16", "fp16", or "auto" (bf16 on CUDA when supported, else fp16; off on CPU).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        eval_every / ckpt_every / log_every: intervals in steps (0 = never; a final eval and checkpoint
            are always written).
        freeze: towers whose weights are never trained (e.g. ["text"]); their projection heads stay
            trainable unless ``freeze_heads`` is true.
        init: a checkpoint folder whose weights the run starts from instead of a fresh model
            (fine-tuning; its model config must be the run's). With ``freeze: [audio, image]`` and
            ``freeze_heads`` it refits the text head to a trained model's fixed audio and image
            space, as LiT (Zhai et al., CVPR 2022) tunes text against a locked image tower.
        cache_frozen_media: run frozen audio/image towers once per item (a fixed crop, no
            augmentation for that modality) and train their heads on the cached features.
        feature_dropout: dropout on the cached features of frozen audio and image towers while their
            heads train
            (the features of an item are the same at every step, so the heads would otherwise
            learn them by heart; 0 = none). Only the training steps see it: the model has no
            dropout layer, so its checkpoint is the same model as its init's.
        feature_copies: training copies of each item cached besides its fixed view, for frozen
            audio/image towers whose features are cached: copy ``c`` is the item as a training batch
            makes it (``data``'s aligned spans, views, crop and augmentation), drawn once per copy,
            and each step gives each item one of its ``1 + feature_copies`` copies, drawn per
            (seed, step, item) and the same for audio and image, so an aligned span stays a pair
            (0 = the fixed view only). The heads then see the other soundfonts, engravings,
            recordings and photos that the towers were trained on, at no tower cost per step.
        partial_to_whole: with ``feature_copies``, the share of the rows drawing a copy that pair
            it with the item's fixed whole view on the other side (audio or image, drawn evenly):
            a span of bars against the whole score or the whole excerpt, as a short clip or half a
            score is queried against whole items (0 = every pair is one copy on both sides).
        num_threads: torch CPU threads (0 = leave torch's default).
        progress: show a tqdm bar on rank 0.
    """

    steps: int = 1000
    accum_steps: int = 1
    amp: str = "auto"
    device: str = "auto"
    eval_every: int = 0
    ckpt_every: int = 0
    log_every: int = 10
    freeze: list[str] = field(default_factory=list)
    freeze_heads: bool = False
    init: str | None = None
    cache_frozen_text: bool = True
    cache_frozen_media: bool = True
    feature_dropout: float = 0.0
    feature_copies: int = 0
    partial_to_whole: float = 0.0
    num_threads: int = 0
    progress: bool = True
    tensorboard: bool = True


@dataclass
class TrainConfig:
    """The whole training configuration (see the module docstring for the file layout)."""

    seed: int = 0
    model: dict[str, Any] = field(default_factory=lambda: {"name": "tiny"})
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "infonce"})
    curriculum: dict[str, Any] | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (saved into checkpoints and the training report)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown section, or an unknown key in one, raises :class:`ConfigError`."""
        raw = dict(raw or {})
        check_keys(cls, raw, what="config")
        kwargs: dict[str, Any] = {}
        for name, sub in (("data", DataConfig), ("optim", OptimConfig), ("train", LoopConfig)):
            kwargs[name] = _build(sub, raw.get(name) or {}, name)
        if "seed" in raw:
            kwargs["seed"] = int(raw["seed"])
        if raw.get("model") is not None:
            kwargs["model"] = dict(raw["model"])
        if raw.get("loss") is not None:
            kwargs["loss"] = dict(raw["loss"])
        kwargs["curriculum"] = dict(raw["curriculum"]) if raw.get("curriculum") else None
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot work."""
        if not self.data.manifest:
            raise ConfigError("config: data.manifest is required")
        bad = set(self.data.modalities) - {"audio", "image", "text"}
        if bad or len(self.data.modalities) < 2:
            raise ConfigError(f"config: data.modalities must be two or more of audio/image/text, got "
                              f"{self.data.modalities}")
        if self.data.batch_size < 2:
            raise ConfigError("config: data.batch_size must be at least 2")
        if self.train.accum_steps < 1 or self.data.batch_size % self.train.accum_steps:
            raise ConfigError("config: data.batch_size must be a multiple of train.accum_steps")
        if self.train.amp not in ("off", "bf16", "fp16", "auto"):
            raise ConfigError(f"config: train.amp must be off/bf16/fp16/auto, got {self.train.amp!r}")
        if self.train.steps < 1:
            raise ConfigError("config: train.steps must be positive")
        if self.data.positive_groups not in ("caption", "none"):
            raise ConfigError("config: data.positive_groups must be caption or none")
        if self.data.build_if_missing not in (None, "synthetic"):
            raise InputError("config: data.build_if_missing must be synthetic or null")
        if self.data.caption_choice not in ("random", "first"):
            raise ConfigError("config: data.caption_choice must be random or first")
        if not 0.0 <= self.train.feature_dropout < 1.0:
            raise ConfigError(f"config: train.feature_dropout must be in [0, 1), "
                              f"got {self.train.feature_dropout}")
        if isinstance(self.train.feature_copies, bool) or not isinstance(self.train.feature_copies, int) \
                or self.train.feature_copies < 0:
            raise ConfigError(f"config: train.feature_copies must be a whole number >= 0, "
                              f"got {self.train.feature_copies!r}")
        if not 0.0 <= self.train.partial_to_whole <= 1.0:
            raise ConfigError(f"config: train.partial_to_whole must be in [0, 1], "
                              f"got {self.train.partial_to_whole}")
        if not 0.0 <= self.data.span_prob <= 1.0:
            raise ConfigError(f"config: data.span_prob must be in [0, 1], got {self.data.span_prob}")
        from xmr.media.augment import build_augment

        build_augment(self.data.augment)  # an unknown preset or key, or a bad range, is an error here
        from xmr.train.views import check_views_setting

        try:
            self.data.views = check_views_setting(self.data.views)
        except ValueError as err:
            raise ConfigError(f"config: {err}") from None
        if not 2 <= self.data.span_min_bars <= self.data.span_max_bars:
            raise ConfigError("config: data.span_min_bars must be at least 2 and at most data.span_max_bars, "
                              f"got {self.data.span_min_bars}..{self.data.span_max_bars}")


def _build(cls, raw: dict[str, Any], section: str):
    check_keys(cls, raw, what=section)
    names = {f.name: f for f in dataclasses.fields(cls)}
    fixed = {}
    for k, v in raw.items():
        kind = str(names[k].type)
        fixed[k] = float(_number(v)) if kind.startswith("float") and isinstance(v, (str, int)) else v
    return strict_from_dict(cls, fixed, what=section)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=VALUE`` into a key path and a YAML-parsed value (``1e-3``, ``[a, b]``, ``null``)."""
    import yaml

    if "=" not in text:
        raise InputError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise InputError(f"--set expects key=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise InputError(f"--set {key}: cannot parse value {value!r}") from err
    return path, _number(parsed)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` (no dot) as a string; numbers are what such a value means."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a nested mapping (in place) and return it."""
    for text in overrides or []:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return raw


def _read_yaml(path: Path, yaml, *, seen: tuple) -> dict[str, Any]:
    """A config file; a top-level ``base: other.yaml`` (relative to this file) is read first and
    this file's values are merged over it, section by section."""
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise InputError(f"config {path}: circular base")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(f"cannot parse config {path}: {str(err).splitlines()[0]}") from err
    if not isinstance(loaded, dict):
        raise InputError(f"config {path} must be a mapping")
    parent = loaded.pop("base", None)
    if parent:
        return _deep_merge(_read_yaml(path.parent / str(parent), yaml, seen=(*seen, path.resolve())), loaded)
    return loaded


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML (or JSON) config file and apply ``--set`` overrides.

    A relative ``data.manifest`` is resolved against the current directory first, then against
    the config file's folder's parent (configs live in ``configs/`` beside the repository root).

    Args:
        path: config file; None starts from ``base`` (or the defaults).
        overrides: ``key=value`` strings, e.g. ``["optim.lr=3e-4", "train.steps=10"]``.
        base: a mapping to start from instead of a file.

    Example:
        >>> cfg = load_config("configs/tiny.yaml", ["train.steps=2"])  # doctest: +SKIP
    """
    import yaml

    raw: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if path is not None:
        path = Path(path)
        raw = _deep_merge(raw, _read_yaml(path, yaml, seen=()))
    apply_overrides(raw, overrides or [])
    cfg = TrainConfig.from_dict(raw)
    manifest = Path(cfg.data.manifest).expanduser()
    if not manifest.is_absolute() and not manifest.exists() and path is not None:
        candidate = Path(path).resolve().parent.parent / manifest
        if candidate.exists():
            cfg.data.manifest = str(candidate)
    return cfg
