"""Self-describing checkpoints: ``model.safetensors`` + ``config.json``; loading never uses pickle.

Layout of a checkpoint folder::

    config.json          format, model config (towers, embed_dim), preprocessing (sample rate,
                         spectrogram, image size/mode, tokenizer), external weights, fingerprint,
                         and whatever the caller passed as extra (training config, metrics, ...)
    model.safetensors    the weights (minus towers marked store_weights=False)
    <name>.safetensors   optional extra tensor files (e.g. a loss memory), same atomic write

The fingerprint is the sha256 of the model config and every weight (stored or external), so two
checkpoints share a fingerprint only if they compute the same embeddings; indexes record it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from xmr.data.jsonl import to_jsonable
from xmr.errors import CheckpointMismatchError, InputError, MissingAssetError
from xmr.models.config import ModelConfig
from xmr.models.fingerprint import external_hashes, fingerprint_from, split_state
from xmr.models.model import XmrModel

FORMAT = "xmr-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# the keys of config.json that save_checkpoint writes itself; the rest is the caller's extra
RESERVED_KEYS = ("format", "format_version", "model", "preprocessing", "external_weights", "fingerprint")


def preprocessing_of(cfg: ModelConfig) -> dict[str, Any]:
    """The preprocessing a checkpoint's users need, in one place of ``config.json``."""
    out: dict[str, Any] = {"sample_rate": cfg.sample_rate, "audio_window_seconds": cfg.audio_window_seconds}
    if cfg.audio is not None:
        out["spectrogram"] = cfg.spectrogram.to_dict()
        if cfg.audio.preprocessing is not None:  # a hub tower's feature extractor
            out["audio_processor"] = cfg.audio.preprocessing
    if cfg.image is not None:
        out["image"] = cfg.image_preprocessing.to_dict()
        if cfg.image.preprocessing is not None:  # a hub tower's image processor (mean, std)
            out["image_processor"] = cfg.image.preprocessing
    if cfg.text is not None:
        out["tokenizer"] = {"source": cfg.text.backbone, "max_length": cfg.text_max_length}
    return out


def save_checkpoint(
    model: XmrModel,
    directory: str | Path,
    *,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    **extra: Any,
) -> Path:
    """Write a checkpoint folder atomically (a temporary sibling folder, then a rename).

    Args:
        model: an :class:`~xmr.models.model.XmrModel`.
        directory: the checkpoint folder (replaced if it exists).
        extra_tensors: optional ``{name: {key: tensor}}`` written as ``<name>.safetensors``.
        extra: JSON-able items stored at the top level of ``config.json`` (e.g. ``training=cfg``,
            ``metrics={...}``, ``step=123``); dataclasses are converted with ``asdict``.

    Returns:
        The checkpoint folder.

    Example:
        >>> save_checkpoint(model, "runs/demo/ckpt", training={"steps": 1000})  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    clash = set(RESERVED_KEYS) & set(extra)
    if clash:
        raise InputError(f"save_checkpoint: reserved config keys {sorted(clash)}")
    stored, external = split_state(model)
    ext_hashes = external_hashes(external)
    cfg = model.config
    fingerprint = fingerprint_from(cfg, stored, ext_hashes)
    ext_info = {}
    for prefix, digest in ext_hashes.items():
        modality = prefix.split(".")[1]
        ext_info[prefix] = {"source": cfg.tower(modality).backbone, "sha256": digest}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "model": cfg.to_dict(),
        "preprocessing": preprocessing_of(cfg),
        "external_weights": ext_info,
        **to_jsonable(extra),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in stored.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT, "fingerprint": fingerprint})
        for name, state in (extra_tensors or {}).items():
            if name in ("model",) or "/" in name:
                raise InputError(f"bad extra tensor file name {name!r}")
            save_file(
                {k: v.detach().cpu().contiguous().clone() for k, v in state.items()},
                str(tmp / f"{name}.safetensors"),
            )
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def replace_dir(src: Path, dst: Path) -> None:
    """Put the complete folder ``src`` in the place of ``dst`` (a checkpoint, an index).

    rename() is atomic for a new name; an existing folder is first moved aside, so a crash leaves
    either the old or the new folder complete (plus a stray hidden folder)."""
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise MissingAssetError(f"no checkpoint at {path} (needs {CONFIG} and {WEIGHTS})")
    return path


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder (no weights loaded)."""
    folder = _folder(path)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointMismatchError(f"{folder / CONFIG} is not valid JSON: {exc}") from exc
    if config.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{folder} is not an xmr checkpoint (format {config.get('format')!r})")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{folder} was written by a newer xmr (format {config['format_version']}); upgrade xmr"
        )
    return config


def load_extra_tensors(path: str | Path, name: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Read ``<name>.safetensors`` written by ``save_checkpoint(extra_tensors={name: ...})``."""
    from safetensors.torch import load_file

    file = _folder(path) / f"{name}.safetensors"
    if not file.is_file():
        raise MissingAssetError(f"no {file.name} in checkpoint {file.parent}")
    return load_file(str(file), device=device)


def load_model(path: str | Path, device: str = "cpu", *, verify: bool = True) -> XmrModel:
    """Rebuild an :class:`~xmr.models.model.XmrModel` from a checkpoint folder (safetensors + JSON).

    Args:
        path: the checkpoint folder (or a file inside it).
        device: where to put the model.
        verify: recompute the fingerprint and compare it with the recorded one (catches corrupted
            weights and a changed external text encoder).

    Raises:
        MissingAssetError: no checkpoint there. CheckpointMismatchError: weights that do not fit
            the config, or a fingerprint that does not match.

    Example:
        >>> model = load_model("checkpoints/demo")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    folder = _folder(path)
    config = read_checkpoint_config(folder)
    cfg = ModelConfig.from_dict(config["model"])
    from xmr.models.hub import skeleton_config

    model = XmrModel(skeleton_config(cfg))  # stored weights: towers need not be fetched from their source
    model.config = cfg
    state = load_file(str(folder / WEIGHTS), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    prefixes = model.external_prefixes()
    missing = [k for k in missing if not any(k.startswith(p) for p in prefixes)]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"checkpoint {folder} does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    recorded = config.get("fingerprint")
    if verify:
        stored, external = split_state(model)
        ext_hashes = external_hashes(external)
        for prefix, info in config.get("external_weights", {}).items():
            if ext_hashes.get(prefix) != info.get("sha256"):
                raise CheckpointMismatchError(
                    f"the weights of {prefix.rstrip('.')} from {info.get('source')} differ from those this "
                    "checkpoint was trained with (another package version?)"
                )
        actual = fingerprint_from(cfg, stored, ext_hashes)
        if recorded != actual:
            raise CheckpointMismatchError(
                f"checkpoint {folder}: weights do not match the recorded fingerprint"
            )
    model._fingerprint = recorded
    model.to(device)
    model.eval()
    return model
