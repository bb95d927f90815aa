"""Hugging Face Space entry point: build the app from ``xmr.app`` and launch it.

Honours ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``; the demo's files come from ``XMR_CHECKPOINT``,
``XMR_INDEX``, ``XMR_MANIFEST`` and ``XMR_LABELS_DB`` (defaults: the bundled demo).
"""

from xmr.app import build_app, launch_options, stop_on_sigterm

demo = build_app()

if __name__ == "__main__":
    stop_on_sigterm()
    demo.launch(**launch_options(demo))
