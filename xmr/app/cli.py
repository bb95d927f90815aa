"""``xmr serve``: launch the app (the same as ``python app.py``)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="launch the app (the same as `python app.py`)",
                       description="Launch the Gradio app on the demo named by XMR_CHECKPOINT, XMR_INDEX, "
                                   "XMR_MANIFEST and XMR_LABELS_DB (default: the bundled demo).")
    p.add_argument("--host", default=None,
                   help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (sets XMR_CHECKPOINT)")
    p.add_argument("--index", default=None, help="index folder (sets XMR_INDEX)")
    p.add_argument("--manifest", default=None, help="manifest file (sets XMR_MANIFEST)")
    p.add_argument("--labels-db", default=None, help="label database (sets XMR_LABELS_DB)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    for name, value in (("GRADIO_SERVER_NAME", args.host), ("GRADIO_SERVER_PORT", args.port),
                        ("XMR_CHECKPOINT", args.checkpoint), ("XMR_INDEX", args.index),
                        ("XMR_MANIFEST", args.manifest), ("XMR_LABELS_DB", args.labels_db)):
        if value is not None:
            os.environ[name] = str(value)
    from xmr.app import build_app, launch_options, stop_on_sigterm

    demo = build_app()
    stop_on_sigterm()
    demo.launch(**launch_options(demo))
    return 0
