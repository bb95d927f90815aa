"""The Gradio Blocks of the app: the Search, Explore, Label and Evaluate tabs over one RetrievalService.

Composition only: :func:`build_blocks` makes each tab's workflow over the shared service and lays the
tabs out; each tab (:mod:`xmr.app.tabs`) holds its layout, its callbacks and their wiring. Callbacks
convert Gradio values to plain ones, call the workflow and turn its errors into ``gr.Error``
messages (the app keeps serving). Per-visitor state (the current query and results, the annotator's
current task) lives in ``gr.State``; the service and the workflows are shared. Every event has an
``api_name`` so that ``gradio_client`` can drive the app.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from xmr.app.service import RetrievalService

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["CSS", "build_blocks"]

CSS = """
.result-slot {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 4px;}
.result-slot img {object-fit: contain; background: white;}
.result-slot [id^='res-img-'] img {width: 100% !important; height: auto !important;
                                   max-height: 70vh !important; cursor: zoom-in;}
.result-slot [id^='res-img-'], .result-slot [id^='res-img-'] div:has(img) {width: 100%;}
#label-item img, #label-query-image img {object-fit: contain; background: white;}
.grade-btn {min-width: 120px;}
"""


def build_blocks(service: RetrievalService) -> gr.Blocks:
    """Build the four tabs over ``service``; returns the ``gr.Blocks``."""
    import gradio as gr

    from xmr.app.evaluation import Evaluation
    from xmr.app.explore import Explorer
    from xmr.app.labelling import Labelling
    from xmr.app.tabs.common import MediaFetcher
    from xmr.app.tabs.evaluate import EvaluateTab
    from xmr.app.tabs.explore import ExploreTab
    from xmr.app.tabs.label import SHORTCUTS_JS, LabelTab
    from xmr.app.tabs.search import ZOOM_JS, SearchTab

    labelling = Labelling(service)
    if labelling.available:  # the demo pool and its first results' media, ready before annotators come
        threading.Thread(target=labelling.prepare, name="xmr-label-prepare", daemon=True).start()
    media = MediaFetcher(service)
    with gr.Blocks(title="xmr — cross-modal music retrieval", analytics_enabled=False) as demo:
        query_state = gr.State(None)  # this visitor's current query and results
        gr.Markdown("# xmr — music, score images and text in one space\n"
                    f"Model `{service.fingerprint[:12]}` · {len(service.manifest)} items · indexes: "
                    f"{', '.join(service.targets())}")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                SearchTab(service, media, query_state).build()
            with gr.Tab("Explore", id="explore") as explore_tab:
                ExploreTab(Explorer(service), query_state).build(explore_tab)
            with gr.Tab("Label", id="label"):
                LabelTab(labelling, media, query_state).build()
            with gr.Tab("Evaluate", id="evaluate") as eval_tab:
                EvaluateTab(Evaluation(service), labelling).build(eval_tab)
        demo.load(None, None, None, js=SHORTCUTS_JS)
        demo.load(None, None, None, js=ZOOM_JS)
    demo.xmr_service = service  # for launch options and tests; not per-visitor state
    return demo
