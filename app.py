"""Hugging Face Space entry point: build the app from ``xmr.app`` and launch it."""

import os

from xmr.app import build_app

demo = build_app()

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
