"""What the trainer needs from a model, on top of :class:`xmr.models.model.XmrModel`.

* builds the model from the config's ``model`` mapping (a registered ``name`` plus dotted overrides,
  or a full model config);
* freezing per tower with the projection head optionally left trainable;
* for a frozen text tower, caches its pooled features per caption string (the tower is a fixed
  function, so running MiniLM once per caption instead of once per step saves most of a CPU run;
  only the projection head then trains on them);
* the same for frozen audio and image towers (pretrained hub towers trained head-only, as LiT and
  ImageBind do): features are cached per input, keyed by the hash of the tensor the tower sees, so
  each item's fixed crop goes through the backbone once;
* embedding of a training :class:`~xmr.train.data.Batch` (or some of its rows).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from xmr.errors import InputError


def build_model_from_config(model_cfg: dict[str, Any]):
    """``{"name": "demo-small", "embed_dim": 128, "audio.backbone": "..."}`` or a full model config
    (``{"audio": {...}, "image": {...}, ...}``) -> an untrained XmrModel."""
    from xmr.models.registry import create_model

    cfg = dict(model_cfg or {})
    name = cfg.pop("name", None)
    if name and name != "custom":
        flat = _flatten(cfg)
        return create_model(name, **flat)
    return create_model(cfg)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        # Tower-level option dicts stay whole (timm kwargs such as drop_rate).
        if isinstance(v, dict) and not key.endswith("options"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed over it: a reader never
    sees half a file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class ModelAdapter:
    """The model as the trainer uses it (see the module docstring)."""

    def __init__(self, model, *, modalities: tuple[str, ...], device):
        self.model = model
        self.unwrapped = model
        self.modalities = modalities
        self.device = device
        self._text_cache: dict[str, Any] = {}
        self._text_cache_file: Path | None = None
        self._media_cache: dict[str, dict[str, Any]] = {}  # modality -> {input hash: features}
        self.feature_dropout = 0.0  # on cached features while the model trains (train.feature_dropout)
        # modality -> (1 + copies, N, F): the cached items' features, in order; copy 0 the fixed view
        self._item_features: dict[str, Any] = {}
        self._frozen: set[str] = set()
        missing = set(modalities) - set(model.modalities)
        if missing:
            raise InputError(f"the model has no tower for {', '.join(sorted(missing))}")

    @classmethod
    def create(cls, model_cfg: dict[str, Any], *, modalities: tuple[str, ...], device) -> ModelAdapter:
        model = build_model_from_config(model_cfg).to(device)
        return cls(model, modalities=modalities, device=device)

    # ------------------------------------------------------------------ facts
    @property
    def embed_dim(self) -> int:
        return int(self.unwrapped.embed_dim)

    @property
    def audio_samples(self) -> int:
        return int(round(self.unwrapped.audio_window_seconds * self.unwrapped.sample_rate))

    def preprocessing(self) -> dict[str, Any]:
        cfg = self.unwrapped.config
        pre = cfg.image_preprocessing
        return {"sample_rate": int(cfg.sample_rate), "image_size": tuple(int(x) for x in pre.size),
                "image_mode": pre.mode, "image_resize": pre.resize}

    # ------------------------------------------------------------------ freezing
    def set_frozen(self, frozen: list[str], *, heads: bool = False) -> None:
        """Freeze the listed towers (and their heads only if ``heads``); config-frozen towers stay
        frozen with their heads trainable (a frozen text encoder's head still learns)."""
        model = self.unwrapped
        cfg_frozen = {m for m in model.modalities if model.config.tower(m).frozen}
        for m in model.modalities:
            want = m in frozen or m in cfg_frozen
            model.set_frozen(m, want)
            if want and not (heads and m in frozen):
                for p in model.heads[m].parameters():
                    p.requires_grad_(True)
        self._frozen = {m for m in model.modalities if m in frozen or m in cfg_frozen}

    def set_trainable(self, modality: str, trainable: bool, *, heads: bool = True) -> None:
        """Switch one tower (and its head) on or off, as the 3CMLF stages do."""
        model = self.unwrapped
        model.set_frozen(modality, not trainable)
        if not trainable and not heads:
            for p in model.heads[modality].parameters():
                p.requires_grad_(True)
        if trainable:
            self._frozen.discard(modality)
        else:
            self._frozen.add(modality)

    def train_mode(self) -> None:
        self.unwrapped.train(True)  # frozen towers stay in eval mode (XmrModel.train)

    def convert_sync_batchnorm(self):
        import torch

        self.unwrapped = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.unwrapped)
        self.model = self.unwrapped
        return self.model

    # ------------------------------------------------------------------ text feature cache
    def _text_tower_fixed(self) -> bool:
        model = self.unwrapped
        tower = model.towers["text"] if "text" in model.modalities else None
        return tower is not None and not any(p.requires_grad for p in tower.parameters())

    def cache_text_features(self, captions: list[list[str]], *, cache_dir: str | Path | None = None,
                            progress: bool = False) -> int:
        """Pre-compute the frozen text tower's features of every caption; returns how many are cached.

        Does nothing when the text tower trains. With ``cache_dir`` the features persist across
        runs in a file named by the tower's source and the model's text settings.
        """
        import torch

        if not self._text_tower_fixed():
            return 0
        unique = sorted({c for caps in captions for c in caps})
        if cache_dir is not None:
            model = self.unwrapped
            key = hashlib.sha1(repr((model.config.tower("text").backbone, model.config.text_max_length,
                                     model.config.tower("text").pooling)).encode()).hexdigest()[:12]
            self._text_cache_file = Path(cache_dir) / f"text-features-{key}.pt"
            if self._text_cache_file.exists() and not self._text_cache:
                self._text_cache = torch.load(self._text_cache_file, weights_only=True)
        missing = [c for c in unique if c not in self._text_cache]
        if missing:
            self._compute_text(missing, progress=progress)
            if self._text_cache_file is not None:
                save_atomic(self._text_cache, self._text_cache_file)
        return len(self._text_cache)

    def _compute_text(self, texts: list[str], *, progress: bool = False, batch_size: int = 128) -> None:
        import torch
        from tqdm import tqdm

        model = self.unwrapped
        tower = model.towers["text"]
        was = tower.training
        tower.eval()
        with torch.no_grad():
            for start in tqdm(range(0, len(texts), batch_size), desc="text features", disable=not progress):
                chunk = texts[start:start + batch_size]
                tokens = {k: v.to(self.device) for k, v in model.tokenize(chunk).items()}
                feats = tower(tokens).float().cpu()
                for t, f in zip(chunk, feats, strict=True):
                    self._text_cache[t] = f.clone()
        tower.train(was)

    def clear_caches(self) -> None:
        self._text_cache = {}
        self._media_cache = {}
        self._item_features = {}

    # ------------------------------------------------------------------ audio/image feature cache
    def tower_fixed(self, modality: str) -> bool:
        """Whether a tower's backbone has no trainable parameter (so its features can be cached)."""
        if modality == "text":
            return self._text_tower_fixed()
        tower = self.unwrapped.towers[modality] if modality in self.unwrapped.modalities else None
        return tower is not None and not any(p.requires_grad for p in tower.parameters())

    @staticmethod
    def _input_key(x) -> str:
        data = x.detach().cpu().contiguous().numpy().tobytes()
        return hashlib.blake2b(data, digest_size=16).hexdigest()

    def _media_cache_file(self, modality: str, cache_dir: str | Path) -> Path:
        import torch

        # Named by the tower's config (its head aside) and weights: another tower never reads these
        # features, a run with another head over the same tower does.
        model = self.unwrapped
        h = hashlib.sha1(repr(model.config.tower(modality).without_head()).encode())
        for key, t in sorted(model.towers[modality].state_dict().items()):
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return Path(cache_dir) / f"{modality}-features-{h.hexdigest()[:12]}.pt"

    def cache_media_features(self, modality: str, items, *, spec, cache_dir: str | Path | None = None,
                             copies: int = 0, copy_spec=None, seed: int = 0, batch_size: int = 32,
                             progress: bool = False) -> int:
        """Run a frozen audio/image tower once over every item of ``items`` (an ``ItemStore``) as
        ``spec`` makes them (no augmentation: a fixed crop per item); returns how many inputs are
        cached.

        With ``copies``, also over ``copies`` training copies of every item, copy ``c`` made by
        ``items.batch(..., spec=copy_spec, seed=seed, step=-c)`` (spans, views and augmentation as
        training draws them; the draws do not depend on the modality, so the audio and image
        copies ``c`` of an item are the same bars). Does nothing when the tower trains. Later
        :meth:`embed` calls look the fixed view's features up by the hash of their input, and
        every copy's by item and ``Batch.copies[modality]`` for a batch made without that modality's tensors
        (``BatchSpec.features_cached``: no media is read at all). With ``cache_dir`` they persist
        across runs: the fixed views' in one file per tower, each copy's in its own file named by
        the tower, the items, the seed and ``copy_spec.media_key()``, written as soon as it is complete.
        """
        import torch

        if not self.tower_fixed(modality):
            return 0
        if copies and copy_spec is None:
            raise ValueError("cache_media_features: copies need a copy_spec")
        cache = self._media_cache.setdefault(modality, {})
        file = self._media_cache_file(modality, cache_dir) if cache_dir is not None else None
        if file is not None and file.exists() and not cache:
            cache.update(torch.load(file, weights_only=True))
        before = len(cache)
        per_copy = [self._features_of(modality, items, spec=spec, batch_size=batch_size, progress=progress)]
        if file is not None and len(cache) > before:
            save_atomic(cache, file)
        for c in range(1, copies + 1):
            # named by what makes the copy: the items, the seed, the copy and the batch settings
            key = json.dumps([items.ids, seed, c, copy_spec.media_key()])
            name = hashlib.sha1(key.encode()).hexdigest()[:12]
            copy_file = file.with_name(f"{file.stem}-copy-{name}.pt") if file is not None else None
            if copy_file is not None and copy_file.exists():
                per_copy.append(torch.load(copy_file, weights_only=True))
                continue
            per_copy.append(self._features_of(modality, items, spec=copy_spec, batch_size=batch_size,
                                              progress=progress, copy=c, seed=seed))
            if copy_file is not None and per_copy[-1] is not None:
                save_atomic(per_copy[-1], copy_file)
        self._item_features[modality] = torch.stack(per_copy) if per_copy[0] is not None else None
        return len(cache)

    def _features_of(self, modality: str, items, *, spec, batch_size: int, progress: bool, copy: int = 0,
                     seed: int = 0):
        """(N, F) frozen-tower features of every item of ``items``: its fixed view as ``spec`` makes
        it (through the input-keyed cache), or its training copy ``copy`` > 0
        (``items.batch(..., seed=seed, step=-copy)``); ``None`` for no items."""
        import torch
        from tqdm import tqdm

        sequence = self.unwrapped.takes_lengths(modality)
        out = []
        for start in tqdm(range(0, len(items), batch_size), disable=not progress,
                          desc=f"{modality} features" + (f" (copy {copy})" if copy else "")):
            rows = list(range(start, min(start + batch_size, len(items))))
            batch = items.batch(rows, spec=spec, seed=seed if copy else 0, step=-copy)
            x, lengths = getattr(batch, modality), batch.lengths.get(modality) if sequence else None
            out.append(self._tower_features(modality, x, lengths) if copy else
                       self._cached_features(modality, x, lengths).cpu())
        return torch.cat(out) if out else None

    def _cached_features(self, modality: str, x, lengths=None):
        """(B, ...) inputs -> (B, F) backbone features, computing only the inputs not seen before.

        A sequence tower's input is keyed by its valid part (``lengths``: samples or columns), so
        an item padded to another batch's width finds its features; the masked tower gives the
        same features at any padding (tests/test_sequence_towers.py)."""
        import torch

        cache = self._media_cache[modality]
        if lengths is None:
            keys = [self._input_key(row) for row in x]
        else:  # the valid part: leading audio samples, a score's (centred) content columns
            from xmr.models.sequence import left_align

            valid = left_align(x, lengths.cpu().long()) if modality == "image" else x
            keys = [self._input_key(row[..., :int(n)]) for row, n in zip(valid, lengths, strict=True)]
        missing = [k for k, key in enumerate(keys) if key not in cache]
        if missing:
            feats = self._tower_features(modality, x[missing],
                                         lengths[missing] if lengths is not None else None)
            for k, f in zip(missing, feats, strict=True):
                cache[keys[k]] = f.clone()
        return torch.stack([cache[key] for key in keys]).to(self.device)

    def _tower_features(self, modality: str, x, lengths=None):
        """(B, ...) inputs -> (B, F) float32 CPU features of the frozen tower, in eval mode."""
        import torch

        model = self.unwrapped
        tower = model.towers[modality]
        was = tower.training
        tower.eval()
        with torch.no_grad():
            feats = model.tower_features(modality, x.to(self.device), lengths)
        tower.train(was)
        return feats.float().cpu()

    # ------------------------------------------------------------------ embedding
    def embed(self, modality: str, batch, *, rows: slice | None = None):
        """Embed one modality of a training batch (optionally only ``rows``) -> (B, D) with grad."""
        import torch

        model = self.unwrapped
        if modality == "text":
            texts = batch.text[rows] if rows is not None else batch.text
            return self.embed_text(texts)
        x = getattr(batch, modality)
        lengths = getattr(batch, "lengths", {}).get(modality) if model.takes_lengths(modality) else None
        if x is None and self._item_features.get(modality) is not None and self.tower_fixed(modality):
            # a batch made with BatchSpec.features_cached: each item's drawn copy, by item
            picked = batch.indices[rows] if rows is not None else batch.indices
            drawn = batch.copies.get(modality) or [0] * len(batch.indices)
            copies = drawn[rows] if rows is not None else drawn
            feats = self._item_features[modality][torch.as_tensor(copies, dtype=torch.long),
                                                  torch.as_tensor(picked, dtype=torch.long)]
            z = model.heads[modality](self._dropped(feats.to(self.device)))
            return torch.nn.functional.normalize(z, dim=-1)
        if rows is not None:
            x = x[rows]
            lengths = lengths[rows] if lengths is not None else None
        if modality in self._media_cache and isinstance(x, torch.Tensor) and self.tower_fixed(modality):
            z = model.heads[modality](self._dropped(self._cached_features(modality, x, lengths)))
            return torch.nn.functional.normalize(z, dim=-1)
        return model.embed(modality, x.to(self.device, non_blocking=True), normalize=True,
                           lengths=lengths) if isinstance(x, torch.Tensor) else model.embed(modality, x)

    def _dropped(self, feats):
        """Cached features with :attr:`feature_dropout` applied while the model trains."""
        import torch

        if self.feature_dropout <= 0 or not self.unwrapped.training:
            return feats
        return torch.nn.functional.dropout(feats, self.feature_dropout, training=True)

    def embed_text(self, texts: list[str]):
        """Captions -> (B, D); through the feature cache when the text tower is frozen."""
        import torch

        model = self.unwrapped
        if self._text_tower_fixed():
            missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
            if missing:
                self._compute_text(missing)
            feats = torch.stack([self._text_cache[t] for t in texts]).to(self.device)
            z = model.heads["text"](feats)
            return torch.nn.functional.normalize(z, dim=-1)
        tokens = {k: v.to(self.device) for k, v in model.tokenize(list(texts)).items()}
        return model.embed("text", tokens)
