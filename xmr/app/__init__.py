"""The Gradio app (the only package that imports gradio)."""

from __future__ import annotations


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


def build_app():
    """Build the Blocks app; until the demo assets exist it explains what is missing."""
    import gradio as gr

    with gr.Blocks(title="xmr — cross-modal music retrieval") as demo:
        gr.Markdown("# xmr — cross-modal retrieval of music, images and text")
        missing = missing_assets()
        if missing:
            gr.Markdown("**The demo assets are missing**, so search is not available yet:\n\n"
                        + "\n".join(missing))
    return demo
