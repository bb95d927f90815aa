"""The model: one tower + projection head per modality into one L2-normalised D-dim space."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmr.errors import InputError
from xmr.models import _media
from xmr.models.config import ModelConfig
from xmr.models.fingerprint import compute_fingerprint
from xmr.models.heads import build_head
from xmr.models.towers import build_tower


def _in_chans(cfg: ModelConfig, modality: str) -> int:
    if modality == "audio":
        return 2 if cfg.spectrogram.kind == "stft" else 1
    if modality == "image":
        return 1 if cfg.image_preprocessing.mode == "L" else 3
    return 0


class AudioProfile(nn.Module):
    """The weight-free profiles of an audio tower's input (``TowerConfig.profile``), concatenated
    in the order listed: ``"pitch_classes"``, the pitch-class profiles of the whole range and of
    the bass (``PROFILE_BANDS``, 24 values; :func:`xmr.media.features.pitch_class_profile`, its
    fold a non-persistent buffer, so checkpoints hold no extra weights); ``"tempo"``, the onset
    strength's autocorrelation (32 values; :func:`xmr.media.features.tempo_profile`)."""

    def __init__(self, cfg: ModelConfig, modality: str) -> None:
        super().__init__()
        from xmr.media.features import PROFILE_BANDS, TEMPO_LAGS, pitch_class_fold

        if modality != "audio":
            raise InputError(f"a tower profile is of audio, not of the {modality} tower")
        self.names = list(cfg.tower(modality).profile or [])
        self.sample_rate = cfg.sample_rate
        fold = np.concatenate([pitch_class_fold(cfg.sample_rate, *band) for band in PROFILE_BANDS.values()])
        self.register_buffer("fold", torch.from_numpy(fold), persistent=False)
        widths = {"pitch_classes": int(fold.shape[0]), "tempo": int(TEMPO_LAGS[2])}
        self.out_dim = sum(widths[n] for n in self.names)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T)`` waves and their valid samples -> ``(B, out_dim)``."""
        from xmr.media.features import pitch_class_profile, tempo_profile

        wave = wave if wave.dim() == 2 else wave.reshape(wave.shape[0], -1)
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1])
        lengths = lengths.clamp(max=wave.shape[1])
        parts = {"pitch_classes": lambda: pitch_class_profile(wave, lengths, self.fold, self.sample_rate),
                 "tempo": lambda: tempo_profile(wave, lengths, self.sample_rate)}
        return torch.cat([parts[n]() for n in self.names], dim=-1)


class XmrModel(nn.Module):
    """Encoders for audio, images and text into one shared space.

    Two ways in:
      * :meth:`encode` for users: raw inputs (waveforms or audio paths, PIL images or image paths,
        strings) -> ``np.ndarray`` float32 ``(N, D)``, L2-normalised, no gradient.
      * :meth:`embed` for training: prepared batch tensors (see :meth:`prepare`) -> torch
        ``(B, D)`` normalised embeddings with gradient.

    Args:
        cfg: the model config (towers, embed_dim, preprocessing).

    Example:
        >>> model = xmr.models.create_model("demo")  # doctest: +SKIP
        >>> model.encode("text", ["a reel on fiddle"]).shape  # doctest: +SKIP
        (1, 256)
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.towers = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.part_heads = nn.ModuleDict()  # TowerConfig.part_head: short clips' own head
        self.profiles = nn.ModuleDict()
        for m in cfg.modalities:
            tcfg = cfg.tower(m)
            if not tcfg.store_weights and tcfg.kind != "hf_text":
                raise InputError(f"store_weights=False is only for text towers loaded from a folder ({m})")
            tower = build_tower(tcfg, in_chans=_in_chans(cfg, m))
            self.towers[m] = tower
            width = tower.out_dim
            if tcfg.profile is not None:
                self.profiles[m] = AudioProfile(cfg, m)
                width += self.profiles[m].out_dim
            self.heads[m] = build_head(
                tcfg.head, width, cfg.embed_dim, hidden=tcfg.head_hidden, dropout=tcfg.dropout
            )
            if tcfg.part_head is not None:
                self.part_heads[m] = build_head(tcfg.part_head, width, cfg.embed_dim)
        self._materialise_lazy()
        for m in cfg.modalities:
            self.set_frozen(m, cfg.tower(m).frozen)
        self._fingerprint: str | None = None

    # ----- attributes of the public contract -----------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        return self.config.modalities

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def audio_window_seconds(self) -> float:
        return self.config.audio_window_seconds

    def _part_head(self, modality: str) -> list[nn.Module]:
        return [self.part_heads[modality]] if modality in self.part_heads else []

    def has_part_head(self, modality: str) -> bool:
        """Whether ``modality`` has a head of its own for short clips (``TowerConfig.part_head``)."""
        return modality in self.part_heads

    def uses_part_head(self, seconds: float) -> bool:
        """Whether audio of ``seconds`` is embedded with the part head: the model has one, and the
        clip is short (:func:`~xmr.models.config.is_part`) and fits in one window."""
        from xmr.models.config import is_part

        return self.has_part_head("audio") and is_part(seconds) and seconds <= self.audio_window_seconds

    @property
    def audio_window_samples(self) -> int:
        return int(round(self.config.audio_window_seconds * self.config.sample_rate))

    @property
    def fingerprint(self) -> str:
        """sha256 of the model config and weights (set on load; computed for a fresh model)."""
        if self._fingerprint is None:
            return compute_fingerprint(self)
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def external_prefixes(self) -> list[str]:
        """State-dict prefixes whose weights are not stored in checkpoints (taken from a package)."""
        return [f"towers.{m}.backbone." for m in self.modalities if not self.config.tower(m).store_weights]

    # ----- freezing ---------------------------------------------------------------------------------
    def set_frozen(self, modality: str, frozen: bool) -> None:
        """Freeze (or release) a tower's backbone and head; a frozen tower also stays in eval mode
        (no dropout or BatchNorm updates), so that it is a fixed target as 3CMLF's teacher
        (Chao et al. 2022, Sec. II-E)."""
        self._check(modality)
        for module in (self.towers[modality], self.heads[modality], *self._part_head(modality)):
            for p in module.parameters():
                p.requires_grad_(not frozen)
        self._frozen = getattr(self, "_frozen", {})
        self._frozen[modality] = frozen
        self.train(self.training)

    def is_frozen(self, modality: str) -> bool:
        return self._frozen.get(modality, False)

    def train(self, mode: bool = True) -> XmrModel:
        super().train(mode)
        for m, frozen in getattr(self, "_frozen", {}).items():
            if frozen:
                for module in (self.towers[m], self.heads[m], *self._part_head(m)):
                    module.eval()
        return self

    # ----- preparation of raw inputs ------------------------------------------------------------------
    def _check(self, modality: str) -> None:
        if modality not in self.modalities:
            raise InputError(f"this model has no {modality!r} encoder (it has {', '.join(self.modalities)})")

    def _materialise_lazy(self) -> None:
        # Lazy modules (PANNs' bn0 without n_freq) learn their size from one forward; do it at build
        # time so that state dicts are complete before any checkpoint is written or loaded.
        from torch.nn.modules.lazy import LazyModuleMixin

        for m in ("audio", "image"):
            if m not in self.towers:
                continue
            lazy = [x for x in self.towers[m].modules() if isinstance(x, LazyModuleMixin)]
            if not any(x.has_uninitialized_params() for x in lazy):
                continue
            if m == "audio":
                dummy = self.features_input("audio", torch.zeros(1, self.audio_window_samples))
            else:
                h, w = self.config.image_preprocessing.size
                dummy = torch.zeros(1, _in_chans(self.config, "image"), h, w)
            was = self.towers[m].training
            with torch.no_grad():
                self.towers[m].eval()
                self.towers[m](dummy)
            self.towers[m].train(was)

    def fit_audio(self, wave: np.ndarray) -> np.ndarray:
        """Crop (from the start) or zero-pad a mono waveform to the model's audio window."""
        n = self.audio_window_samples
        if wave.shape[0] >= n:
            return wave[:n]
        return np.pad(wave, (0, n - wave.shape[0]))

    def prepare(self, modality: str, inputs: Sequence[Any]) -> Any:
        """Raw inputs -> the batch :meth:`embed` takes.

        audio: waveforms (1-D arrays at ``sample_rate``) or paths -> ``(B, T)`` float tensor of the
        window length; image: PIL images, arrays or paths -> ``(B, C, H, W)`` in [0, 1];
        text: strings -> the tokenizer's dict (``input_ids``, ``attention_mask``).
        """
        return self.prepare_with_lengths(modality, inputs)[0]

    def takes_lengths(self, modality: str) -> bool:
        """Whether the tower of ``modality`` reads a sequence with per-item lengths (``seq_cnn``)."""
        return modality in self.towers and bool(getattr(self.towers[modality], "takes_lengths", False))

    def prepare_with_lengths(self, modality: str, inputs: Sequence[Any], *,
                             notes: list[str] | None = None) -> tuple[Any, Any]:
        """:meth:`prepare` plus the valid length of each item: audio samples (``min(len,
        window)``), image content columns (:func:`~xmr.models.sequence.fitted_width`); ``None``
        for text. Sequence towers mask what lies after them; the other towers ignore them.
        ``notes``: a list to append what was done to a picture to (a score model's
        :func:`~xmr.media.score.read_score_page`)."""
        self._check(modality)
        if (
            isinstance(inputs, (str, Path))
            or not isinstance(inputs, Sequence)
            and not isinstance(inputs, np.ndarray)
        ):
            raise InputError(f"encode({modality!r}, ...) takes a list of inputs")
        lengths: list[int] = []
        if modality == "audio":
            waves = []
            for x in inputs:
                if isinstance(x, np.ndarray) and x.dtype != object:
                    w = np.asarray(x, dtype=np.float32)
                    if np.issubdtype(x.dtype, np.integer):  # PCM samples: scale to [-1, 1]
                        w = w / float(np.iinfo(x.dtype).max)
                    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
                        raise InputError("an audio waveform must be a non-empty finite 1-D array")
                elif isinstance(x, torch.Tensor):
                    w = x.detach().cpu().float().numpy()
                else:
                    w = _media.load_audio(x, sample_rate=self.sample_rate)
                lengths.append(min(len(w), self.audio_window_samples))
                waves.append(self.fit_audio(w))
            return torch.from_numpy(np.stack(waves).astype(np.float32)), torch.tensor(lengths)
        if modality == "image":
            from xmr.models.sequence import fitted_width

            cfg = self.config.image_preprocessing
            imgs = []
            for x in inputs:
                img = _media.load_image(x, max_pixels=cfg.max_pixels)
                if cfg.score_interline is not None:
                    img, note = _media.read_score_page(img, interline=cfg.score_interline, height=cfg.size[0])
                    if note and notes is not None:
                        notes.append(f"the picture was {note}")
                lengths.append(fitted_width(img.width, img.height, cfg.size, cfg.resize))
                imgs.append(_media.prepare_image(img, cfg))
            return torch.stack(imgs), torch.tensor(lengths)
        texts = [_media.normalize_text(t).text for t in inputs]
        return self.tokenize(texts), None

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise captions with the text tower's tokenizer (padding, truncation to text_max_length)."""
        self._check("text")
        tok = self.towers["text"].tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.text_max_length,
            return_tensors="pt",
        )
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    # ----- forward ------------------------------------------------------------------------------------
    def features_input(self, modality: str, batch: Any) -> Any:
        """What the tower sees: audio waveforms become spectrograms here (on the model's device)."""
        if modality == "audio":
            wave = batch if batch.dim() == 2 else batch.reshape(batch.shape[0], -1)  # (B, T)
            if getattr(self.towers["audio"], "takes_waveform", False):  # hub towers make their own features
                return wave.float()
            with torch.autocast(device_type=wave.device.type, enabled=False):
                return _media.compute_features(wave.float(), self.config.spectrogram)  # (B, C, F, frames)
        return batch

    def sequence_input(self, modality: str, batch: torch.Tensor,
                       lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """What a sequence tower sees, with its lengths in steps: audio trimmed to the longest item,
        its features and frame counts (``spectrogram.num_frames``); images with their centred
        content moved left (:func:`~xmr.models.sequence.left_align`) and their widths."""
        from xmr.models.sequence import left_align

        n = batch.shape[0]
        if modality == "audio":
            wave = batch if batch.dim() == 2 else batch.reshape(n, -1)
            full = torch.full((n,), wave.shape[1], dtype=torch.long)
            lengths = full if lengths is None else lengths.detach().cpu().long().clamp(1, wave.shape[1])
            feats = self.features_input("audio", wave[:, :int(lengths.max())])
            spec = self.config.spectrogram
            frames = torch.tensor([spec.num_frames(int(v)) for v in lengths]).clamp(1, feats.shape[-1])
            return feats, frames.to(feats.device)
        full = torch.full((n,), batch.shape[-1], dtype=torch.long)
        widths = full if lengths is None else lengths.detach().cpu().long().clamp(1, batch.shape[-1])
        return left_align(batch, widths), widths.to(batch.device)

    def embed(self, modality: str, batch: Any, *, normalize: bool = True,
              lengths: torch.Tensor | None = None, part: bool = False) -> torch.Tensor:
        """Prepared batch -> ``(B, D)`` embeddings with gradient (L2-normalised unless told not to).

        Args:
            modality: ``"audio"`` (``(B, T)`` waveforms), ``"image"`` (``(B, C, H, W)``) or
                ``"text"`` (tokenizer dict or a list of strings).
            batch: the prepared batch, on the model's device.
            normalize: L2-normalise the output.
            lengths: ``(B,)`` valid audio samples / image content columns per item (see
                :meth:`prepare_with_lengths`); read by sequence towers only, which take the
                whole input as valid without them.
            part: project with the head for short clips (``TowerConfig.part_head``).
        """
        self._check(modality)
        if part and not self.has_part_head(modality):
            raise InputError(f"this model has no part head for {modality}")
        if modality == "text" and isinstance(batch, (list, tuple)):
            batch = {k: v.to(self.device) for k, v in self.tokenize(list(batch)).items()}
        head = self.part_heads[modality] if part else self.heads[modality]
        z = head(self.tower_features(modality, batch, lengths))  # (B, D)
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def tower_features(self, modality: str, batch: Any, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared batch -> ``(B, F)``, what the projection head reads: the tower's features,
        followed by the input's profile where the tower has one (``TowerConfig.profile``)."""
        if self.takes_lengths(modality):
            feats = self.towers[modality](*self.sequence_input(modality, batch, lengths))
        else:
            feats = self.towers[modality](self.features_input(modality, batch))
        if modality in self.profiles:
            profile = self.profiles[modality](batch, None if lengths is None else lengths.cpu())
            feats = torch.cat([feats, profile.to(feats.dtype)], dim=-1)
        return feats

    forward_features = embed

    def forward(self, modality: str, batch: Any) -> torch.Tensor:
        return self.embed(modality, batch)

    @torch.no_grad()
    def encode(self, modality: str, inputs: Sequence[Any], batch_size: int = 32, *,
               notes: list[str] | None = None, part: bool = False) -> np.ndarray:
        """Raw inputs -> float32 ``(N, D)`` L2-normalised embeddings (eval mode, no gradient).

        Args:
            modality: ``"audio"``, ``"image"`` or ``"text"``.
            inputs: waveforms at ``model.sample_rate`` or audio paths (cropped or padded to
                ``audio_window_seconds``; window longer audio yourself; sequence towers mask the
                padding) / PIL images or image paths / strings.
            batch_size: items per forward pass.
            notes: a list to append what the user should know about the inputs to (a score
                picture read as a photographed page, ...).
            part: embed with the head for short clips (:meth:`has_part_head`); callers choose it
                by the clip's length (:func:`xmr.index.embed_audio`).

        Example:
            >>> model.encode("audio", [np.zeros(16000, np.float32)]).shape  # doctest: +SKIP
            (1, 256)
        """
        self._check(modality)
        items = list(inputs)
        if not items:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        was = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(items), max(1, int(batch_size))):
                batch, lengths = self.prepare_with_lengths(modality, items[start : start + batch_size],
                                                           notes=notes)
                if isinstance(batch, dict):
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                else:
                    batch = batch.to(self.device)
                out.append(self.embed(modality, batch, lengths=lengths, part=part).float().cpu())
        finally:
            self.train(was)
        return torch.cat(out).numpy().astype(np.float32, copy=False)
