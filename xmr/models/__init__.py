"""Encoders by name, the multi-modal model, and self-describing checkpoints.

Example:
    >>> from xmr.models import create_model, list_models
    >>> model = create_model("demo")  # doctest: +SKIP
    >>> model.encode("text", ["a chorale for organ"]).shape  # doctest: +SKIP
    (1, 256)
"""

from xmr.models import hub as _hub  # noqa: F401  (registers the hf_audio / hf_image towers)
from xmr.models import sequence as _sequence  # noqa: F401  (registers the seq_cnn tower)
from xmr.models.checkpoint import load_model, read_checkpoint_config, save_checkpoint
from xmr.models.config import TEXT_SOURCE_PACKAGE, ModelConfig, TowerConfig
from xmr.models.registry import create_model, get_model_config, list_models, register_model

__all__ = [
    "TEXT_SOURCE_PACKAGE",
    "ModelConfig",
    "TowerConfig",
    "create_model",
    "get_model_config",
    "list_models",
    "load_model",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
]
