"""xmr: cross-modal retrieval of music (audio), images and text in one embedding space.

The public API is small::

    import xmr
    model = xmr.load_model("checkpoints/demo")
    vectors = model.encode("text", ["a chorale for organ in G major"])  # (1, D) float32, L2-normalised

Heavy modules (torch, faiss, gradio) are imported only by the functions that need them.
"""

from xmr.errors import CheckpointMismatchError, InputError, ManifestError, MissingAssetError, XmrError

__version__ = "0.1.0"

MODALITIES = ("audio", "image", "text")

__all__ = [
    "MODALITIES",
    "CheckpointMismatchError",
    "InputError",
    "ManifestError",
    "MissingAssetError",
    "XmrError",
    "__version__",
    "load_model",
]


def load_model(path, device: str = "cpu"):
    """Load a self-describing checkpoint folder (safetensors weights + JSON config).

    Args:
        path: the checkpoint folder (``model.safetensors`` + ``config.json``).
        device: torch device to put the model on.

    Example:
        >>> model = xmr.load_model("checkpoints/demo")  # doctest: +SKIP
        >>> model.encode("text", ["a reel on fiddle"]).shape  # doctest: +SKIP
        (1, 256)
    """
    from xmr.models.checkpoint import load_model as _load

    return _load(path, device=device)
