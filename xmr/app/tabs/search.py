"""The Search tab: query inputs and weights, targets, example queries and the result cards.

One search chain (search → cards → the bars of each score that match an audio query → the score
images, those bars highlighted → their audio) is wired by
:meth:`SearchTab.chain_search`, after the Search button, the text box's Enter, each result's
“Use as query”, the example buttons and the hidden ``use_item`` endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from xmr import MODALITIES
from xmr.app.service import RetrievalService
from xmr.app.tabs.common import UI_MAX_K, MediaFetcher, gr_errors, payload_path
from xmr.app.tabs.format import hit_markdown
from xmr.errors import InputError
from xmr.index.query import EncodedQuery

__all__ = ["ZOOM_JS", "ResultSlot", "SearchTab"]

# A click on a result's score opens it full screen (its own fullscreen button).
ZOOM_JS = """
() => {
  if (window.__xmrZoom) return;
  window.__xmrZoom = true;
  document.addEventListener('click', (ev) => {
    const img = ev.target.closest && ev.target.closest(".result-slot [id^='res-img-'] img");
    if (!img) return;
    const box = img.closest("[id^='res-img-']");
    const btn = box && [...box.querySelectorAll('button')].find(
      (b) => /full ?screen/i.test((b.getAttribute('aria-label') || '') + ' ' + (b.title || '')));
    if (btn) { ev.preventDefault(); btn.click(); }
  });
}
"""


@dataclass(frozen=True)
class ResultSlot:
    """The components of one result card."""

    box: gr.Group
    image: gr.Image
    text: gr.Markdown
    audio: gr.Audio
    use: gr.Button


class SearchTab:
    """Layout, callbacks and wiring of the Search tab.

    Args:
        service: the shared retrieval service.
        media: fetches the result cards' pictures and clips.
        query_state: this visitor's current query and results (read by the Explore and Label tabs).
    """

    def __init__(self, service: RetrievalService, media: MediaFetcher, query_state: gr.State):
        self.service = service
        self.media = media
        self.query_state = query_state
        self.max_k = min(service.config.max_k, UI_MAX_K)

    def build(self) -> None:
        """Lay the tab out in the current ``gr.Tab`` and wire its events."""
        self._inputs()
        self._examples_and_results()
        self._wire()

    # ------------------------------------------------------------------ layout

    def _inputs(self) -> None:
        targets_all = self.service.targets()
        with gr.Row(equal_height=False):
            with gr.Column(min_width=240):
                self.audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                         label="Music clip (upload or record)", elem_id="q-audio")
                self.w_audio = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the clip",
                                         elem_id="w-audio")
            with gr.Column(min_width=240):
                # image_mode=None: the upload reaches the decoder as it was sent (its name, its
                # frames), not re-encoded by Gradio into a one-frame WebP
                self.image_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                                         label="Image (score snippet, cover, photo)", elem_id="q-image",
                                         height=200, image_mode=None)
                self.w_image = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the image",
                                         elem_id="w-image")
            with gr.Column(min_width=240):
                self.text_in = gr.Textbox(label="Text", lines=3, elem_id="q-text",
                                          placeholder="e.g. a lively reel on fiddle in D major")
                self.w_text = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the text",
                                        elem_id="w-text")
        with gr.Row():
            # (label, value) pairs: a bare "audio" label is taken for a Gradio translation key
            default_targets = [t for t in ("audio", "image") if t in targets_all] or targets_all
            self.targets = gr.CheckboxGroup([(t.capitalize(), t) for t in targets_all], value=default_targets,
                                            label="Search in", elem_id="targets")
            self.k_in = gr.Slider(1, self.max_k, value=min(8, self.max_k), step=1, label="results (k)",
                                  elem_id="k")
            self.use_as = gr.Radio([("Audio", "audio"), ("Image", "image"), ("Caption", "text")],
                                   value="audio", label="“Use as query” takes the result's", elem_id="use-as")
        with gr.Row():
            self.search_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
            self.clear_btn = gr.Button("Clear", elem_id="clear-btn")

    def _examples_and_results(self) -> None:
        self.examples: list[tuple[gr.Button, str, str, int]] = []
        with gr.Accordion("Example queries from the test split (one click runs them)", open=True):
            for m in MODALITIES:
                with gr.Row():
                    for n, item_id in enumerate(self.service.examples(m, 3)):
                        b = gr.Button(f"{m} example {n + 1}", size="sm", elem_id=f"example-{m}-{n}")
                        self.examples.append((b, m, item_id, n))
        self.status = gr.Markdown(elem_id="search-status")
        self.slots: list[ResultSlot] = []
        with gr.Column(elem_id="results"):
            for row_start in range(0, self.max_k, 2):
                with gr.Row(equal_height=True):
                    for i in range(row_start, min(row_start + 2, self.max_k)):
                        self.slots.append(_result_slot(i))
        with gr.Accordion("Results as JSON", open=False):
            self.results_json = gr.JSON(label="results", elem_id="results-json")
        self.item_id_in = gr.Textbox(visible=False)
        self.use_item_btn = gr.Button(visible=False)

    # ------------------------------------------------------------------ wiring

    def chain_search(self, listener: Callable[..., Any], suffix: str = "") -> Any:
        """Wire the search chain after ``listener`` (an event's ``click``, ``submit`` or ``success``):
        search, draw the cards at once, then (for an audio query) find the bars of each score that
        match best, then fetch their score images (those bars highlighted), then their audio.

        ``suffix`` names the chain's endpoints (``search_SUFFIX``, ...; undocumented); without one they
        are the Search button's ``search``, ``show_results``, ``result_bars``, ``result_images`` and
        ``result_audio``.
        """
        def api(name: str) -> dict[str, str]:
            return {"api_name": f"{name}_{suffix}", "api_visibility": "undocumented"} if suffix else \
                {"api_name": name}

        inputs = [self.audio_in, self.image_in, self.text_in, self.w_audio, self.w_image, self.w_text,
                  self.targets, self.k_in]
        cards = [c for s in self.slots for c in (s.box, s.image, s.text)]
        # preprocess=False: uploads reach xmr.media untouched, so a corrupt file gets our message
        return (listener(self.run_search, inputs, [self.results_json, self.query_state, self.status],
                         preprocess=False, **api("search"))
                .success(self.show_results, self.results_json, cards, **api("show_results"))
                .success(self.locate_bars, [self.results_json, self.query_state],
                         [self.results_json] + [s.text for s in self.slots], **api("result_bars"))
                .success(self.load_result_images, self.results_json, [s.image for s in self.slots],
                         **api("result_images"))
                .success(self.load_result_audio, self.results_json, [s.audio for s in self.slots],
                         **api("result_audio")))

    def _wire(self) -> None:
        query_inputs = [self.audio_in, self.image_in, self.text_in]
        self.chain_search(self.search_btn.click)
        self.chain_search(self.text_in.submit, "submit")
        cards = [c for s in self.slots for c in (s.box, s.image, s.text)]
        self.clear_btn.click(lambda: (None, None, "", 1.0, 1.0, 1.0, None, None, ""), None,
                             query_inputs + [self.w_audio, self.w_image, self.w_text, self.results_json,
                                             self.query_state, self.status], api_name="clear") \
            .then(self.show_results, self.results_json, cards, api_name="show_results_clear",
                  api_visibility="undocumented")
        for i, slot in enumerate(self.slots):
            ev = slot.use.click(functools.partial(self.use_result, i), [self.results_json, self.use_as],
                                query_inputs, api_name=f"use_result_{i}", api_visibility="undocumented")
            self.chain_search(ev.success, f"use_{i}")
        ev = self.use_item_btn.click(self.fill_from_item, [self.item_id_in, self.use_as], query_inputs,
                                     api_name="use_item")
        self.chain_search(ev.success, "use_item")
        for b, m, item_id, n in self.examples:
            ev = b.click(functools.partial(self.fill_from_item, item_id, m), None, query_inputs,
                         api_name=f"example_{m}_{n}", api_visibility="undocumented")
            self.chain_search(ev.success, f"ex_{m}_{n}")

    # ------------------------------------------------------------------ callbacks

    @gr_errors
    def run_search(self, audio, image, text, w_audio, w_image, w_text, targets, k):
        if not targets:
            raise InputError("choose at least one target modality (audio, image or text) to search in")
        service = self.service
        query = service.encode_query(audio=audio, image=image, text=text,
                                     weights={"audio": w_audio, "image": w_image, "text": w_text})
        results = [service.hit_dict(h) for h in service.search(query, targets=targets, k=int(k))]
        inputs = {"text": text if isinstance(text, str) and text.strip() else None,
                  "audio": payload_path(audio), "image": payload_path(image)}
        state = {"query": query.to_dict(), "inputs": inputs, "hits": results,
                 "fingerprint": service.fingerprint}
        status = f"**{len(results)} results** for a query of {query.description} in {', '.join(targets)}."
        if query.notes:
            status += " " + "; ".join(query.notes) + "."
        return results, state, status

    def show_results(self, results):
        # cards at once with what is ready; pictures still to render come in the next step
        results = results or []
        images = [self.service.media_if_ready(h["item_id"], "image") for h in results[: self.max_k]]
        images = [None if p is None else str(p) for p in images]
        out = []
        for i in range(self.max_k):
            if i < len(results):
                out += [gr.update(visible=True), images[i], hit_markdown(results[i])]
            else:
                out += [gr.update(visible=False), None, ""]
        return out

    @gr_errors
    def locate_bars(self, results, state):
        """For an audio query: each result's best-matching bars (``bars`` of its dict) and its card text."""
        results = [dict(h) for h in (results or [])]
        query = (state or {}).get("query")
        found = {}
        if query and results:
            found = self.service.locate_bars(EncodedQuery.from_dict(query), [h["item_id"] for h in results])
        for h in results:
            match = found.get(h["item_id"])
            h["bars"] = None if match is None else match.to_dict()
        return [results] + [hit_markdown(results[i]) if i < len(results) else "" for i in range(self.max_k)]

    def load_result_images(self, results):
        return self.media.score_images(results, self.max_k)

    def load_result_audio(self, results):
        return self.media.for_results(results, "audio", self.max_k)

    @gr_errors
    def use_result(self, slot: int, results, use_as):
        results = results or []
        if slot >= len(results):
            raise InputError("there is no result in that place any more; run the search again")
        return self.fill_from_item(results[slot]["item_id"], use_as)

    @gr_errors
    def fill_from_item(self, item_id, use_as):
        """Put an item's audio, image or first caption into the query inputs (the others cleared)."""
        use_as = use_as or "audio"
        if use_as == "text":
            caps = self.service.captions(item_id)
            if not caps:
                raise InputError(f"item {item_id} has no caption")
            return None, None, caps[0]
        if use_as not in ("audio", "image"):
            raise InputError(f"cannot use an item's {use_as!r} as a query")
        path = str(self.service.media(item_id, use_as))
        return (path, None, "") if use_as == "audio" else (None, path, "")


def _result_slot(i: int) -> ResultSlot:
    # the score at the card's full width (its height follows), the fullscreen button enlarges it
    with gr.Group(visible=False, elem_classes="result-slot", elem_id=f"res-{i}") as box:
        img = gr.Image(type="filepath", interactive=False, show_label=False, elem_id=f"res-img-{i}",
                       elem_classes="result-score", container=False, buttons=["fullscreen", "download"])
        md = gr.Markdown(elem_id=f"res-md-{i}")
        aud = gr.Audio(type="filepath", interactive=False, show_label=False, elem_id=f"res-audio-{i}")
        use = gr.Button("Use as query", size="sm", elem_id=f"res-use-{i}")
    return ResultSlot(box=box, image=img, text=md, audio=aud, use=use)
