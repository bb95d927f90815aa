"""The Gradio app (the only package that imports gradio).

``build_app()`` loads the demo named by ``xmr.paths`` (``XMR_CHECKPOINT``, ``XMR_INDEX``,
``XMR_MANIFEST``, ``XMR_LABELS_DB``) into one :class:`~xmr.app.service.RetrievalService` and builds
the Blocks over it; ``launch_options()`` gives the limits the app is launched with.

Example::

    from xmr.app import build_app, launch_options
    demo = build_app()
    demo.launch(**launch_options())
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xmr.app.service import RetrievalService

# Upload cap of the app (Gradio refuses larger files before they reach us).
MAX_FILE_SIZE = "25mb"
# Queue limits: CPU-bound work, so at most two requests at once per event, and a bounded backlog.
CONCURRENCY_LIMIT = 2
QUEUE_MAX_SIZE = 64


def missing_assets() -> list[str]:
    """Lines naming each bundled asset that is missing and the command that builds it."""
    from xmr import paths

    lines = []
    if not paths.demo_manifest().exists():
        lines.append(f"- demo manifest `{paths.demo_manifest().name}`: build it with "
                     "`xmr corpus build --out data/corpus`")
    if not paths.demo_checkpoint().exists():
        lines.append("- demo checkpoint: train it with "
                     "`xmr train --config configs/demo.yaml --out checkpoints/demo`")
    if not paths.demo_index().exists():
        lines.append("- demo indexes: `xmr embed ...` then `xmr index build ... --out assets/demo/index`")
    return lines


def _missing_page(lines: list[str], error: str | None = None):
    import gradio as gr

    with gr.Blocks(title="xmr — cross-modal music retrieval") as demo:
        gr.Markdown("# xmr — cross-modal retrieval of music, images and text")
        if lines:
            gr.Markdown("**The demo assets are missing**, so search is not available yet:\n\n"
                        + "\n".join(lines))
        if error:
            gr.Markdown(f"**The demo could not be loaded:** {error}")
    return demo


def build_app(service: RetrievalService | None = None):
    """Build the Blocks app over ``service`` (default: the demo named by ``xmr.paths``).

    Until the demo assets exist, or when they cannot be loaded, the page says plainly what is
    missing and how to build it instead of failing.
    """
    from xmr.errors import XmrError

    if service is None:
        missing = missing_assets()
        if missing:
            return _missing_page(missing)
        from xmr.app.service import RetrievalService, ServiceConfig

        try:
            service = RetrievalService.from_config(ServiceConfig.from_env())
        except XmrError as err:
            return _missing_page([], error=str(err))
    import threading

    from xmr.app.ui import build_blocks

    demo = build_blocks(service)
    threading.Thread(target=service.warm_up, name="xmr-warm-up", daemon=True).start()
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)
    return demo


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the app as Ctrl-C does: Gradio closes its server, and at exit the label
    store checkpoints its WAL into ``labels.sqlite`` (Python's default ends the process at once)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _auth_from_env() -> list[tuple[str, str]] | None:
    """``XMR_APP_AUTH="ada:secret,bob:pw"`` → Gradio's ``auth`` list (the user name is the annotator)."""
    raw = os.environ.get("XMR_APP_AUTH", "").strip()
    if not raw:
        return None
    pairs = []
    for part in raw.split(","):
        user, sep, password = part.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError("XMR_APP_AUTH must look like 'name:password[,name2:password2]'")
        pairs.append((user, password))
    return pairs


def launch_options(demo: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: host and port from ``GRADIO_SERVER_NAME`` /
    ``GRADIO_SERVER_PORT``, the upload cap, optional ``auth`` from ``XMR_APP_AUTH``, and the folders
    the app may serve files from (rendered media cache, the collection's media, stored label media)."""
    from xmr import paths

    allowed = {paths.cache_dir(), paths.demo_manifest().parent, paths.labels_db().parent}
    service = getattr(demo, "xmr_service", None)
    if service is not None:
        cfg = service.config
        allowed |= {Path(cfg.cache_dir), Path(cfg.manifest).parent, Path(cfg.labels_db).parent}
        for modality in ("audio", "image"):
            if modality in service.manifest.columns:
                # media of a user's own collection may live anywhere; allow the folders it names
                folders = service.manifest[modality].dropna().map(lambda p: str(Path(p).parent)).unique()
                allowed |= {Path(f) for f in folders[:50]}
    opts: dict[str, Any] = {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": sorted(str(p) for p in allowed),
        "show_error": True,
        "css": _css(),
    }
    auth = _auth_from_env()
    if auth:
        opts["auth"] = auth
    return opts


def _css() -> str:
    from xmr.app.ui import CSS

    return CSS
