"""The Label tab: an annotator grades pooled results (or the current search's), with undo,
progress and keyboard shortcuts."""

from __future__ import annotations

import functools
import os
from typing import Any

import gradio as gr

from xmr.app.labelling import Labelling
from xmr.app.tabs.common import MediaFetcher, gr_errors
from xmr.app.tabs.format import progress_markdown
from xmr.errors import InputError

__all__ = ["GRADES", "LABEL_CONCURRENCY", "SHORTCUTS_JS", "LabelTab"]

# Label events running at once, shared by Next, the grades and Undo: each is a short SQLite
# transaction plus files already rendered ahead, so a team of annotators is served side by side
# (the app's default of 2 per event is for the CPU-bound searches).
LABEL_CONCURRENCY = 16

GRADES = {0: "0 · not relevant", 1: "1 · somewhat", 2: "2 · relevant", 3: "3 · highly relevant"}

# Keyboard shortcuts of the Label tab: 0-3 grade, u undo, n next. Ignored while typing in a field
# and while the grade buttons are not on screen (another tab is open).
SHORTCUTS_JS = """
() => {
  if (window.__xmrShortcuts) return;
  window.__xmrShortcuts = true;
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    const ids = {'0': 'grade-0', '1': 'grade-1', '2': 'grade-2', '3': 'grade-3', 'u': 'label-undo',
                 'n': 'label-next'};
    const id = ids[ev.key];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return;
    const btn = el.tagName === 'BUTTON' ? el : el.querySelector('button');
    if (btn && !btn.disabled) { ev.preventDefault(); btn.click(); }
  });
}
"""



class LabelTab:
    """Layout, callbacks and wiring of the Label tab.

    Per-visitor state: the annotator (once resolved) and the task on screen, each a ``gr.State``.

    Args:
        labelling: the labelling workflow over the shared label store.
        media: fetches the graded item's picture and clip.
        query_state: this visitor's current search (written by the Search tab), for “current search”.
    """

    def __init__(self, labelling: Labelling, media: MediaFetcher, query_state: gr.State):
        self.labelling = labelling
        self.media = media
        self.query_state = query_state

    def build(self) -> None:
        """Lay the tab out in the current ``gr.Tab`` and wire its events."""
        self.annotator_state = gr.State(None)
        self.task_state = gr.State(None)
        self._layout()
        self._wire()

    def _layout(self) -> None:
        gr.Markdown("Grade how relevant each result is to its query (0 = not relevant … "
                    "3 = highly relevant). Each grade is saved at once; keys **0–3** grade, **u** "
                    "undoes the last grade, **n** asks for the next one.")
        with gr.Row():
            if (os.environ.get("SYSTEM") == "spaces" and os.environ.get("SPACE_ID")
                    and os.environ.get("OAUTH_CLIENT_ID")):
                # a Space with hf_oauth: true (Spaces set SYSTEM and the OAUTH_* variables)
                gr.LoginButton()
            self.name_in = gr.Textbox(label="Your name (annotator)", elem_id="annotator",
                                      placeholder="e.g. ada", scale=2)
            self.source = gr.Radio(["pooled queue", "current search"], value="pooled queue",
                                   label="What to grade", elem_id="label-source", scale=2)
            self.next_btn = gr.Button("Next", variant="primary", elem_id="label-next", scale=1)
        self.progress_md = gr.Markdown(elem_id="label-progress")
        with gr.Row():
            with gr.Column():
                self.query_md = gr.Markdown(elem_id="label-query")
                self.query_img = gr.Image(interactive=False, show_label=False, visible=False, height=200,
                                          elem_id="label-query-image", type="filepath")
                self.query_aud = gr.Audio(interactive=False, show_label=False, visible=False,
                                          elem_id="label-query-audio", type="filepath")
            with gr.Column():
                self.item_img = gr.Image(interactive=False, show_label=False, height=200,
                                         elem_id="label-item", type="filepath")
                self.item_aud = gr.Audio(interactive=False, show_label=False, elem_id="label-item-audio",
                                         type="filepath")
                self.item_md = gr.Markdown(elem_id="label-item-text")
        with gr.Row():
            self.grade_btns = [gr.Button(GRADES[g], elem_id=f"grade-{g}", elem_classes="grade-btn")
                               for g in range(4)]
            self.undo_btn = gr.Button("Undo (u)", elem_id="label-undo")

    def _wire(self) -> None:
        # what task_outputs fills, in its order
        task_view = [self.task_state, self.query_md, self.query_img, self.query_aud, self.item_img,
                     self.item_aud, self.item_md, self.progress_md]
        slots = {"concurrency_limit": LABEL_CONCURRENCY, "concurrency_id": "label"}
        self.next_btn.click(self.label_next, [self.name_in, self.source, self.query_state],
                            [self.annotator_state] + task_view, api_name="label_next", **slots)
        for g, b in enumerate(self.grade_btns):
            b.click(functools.partial(self.label_grade, g),
                    [self.annotator_state, self.task_state, self.source, self.query_state], task_view,
                    api_name=f"grade_{g}", **slots)
        self.undo_btn.click(self.label_undo, [self.annotator_state, self.task_state], task_view,
                            api_name="label_undo", **slots)

    # ------------------------------------------------------------------ callbacks

    def resolve_annotator(self, name: str | None, profile: Any, request: Any) -> str:
        """The signed-in user (Hugging Face OAuth or the app's log-in), else the typed name."""
        if profile is not None and getattr(profile, "username", None):
            return str(profile.username)
        user = getattr(request, "username", None) if request is not None else None
        if user:
            return str(user)
        return self.labelling.annotator_name(name)

    def task_outputs(self, task: dict[str, Any] | None, annotator: str | None) -> tuple:
        """The values of the task view (state, query, query image and audio, item image, audio and
        text, progress) for ``task``; an empty view when there is nothing left."""
        if task is None:
            progress = progress_markdown(self.labelling.progress(annotator), annotator) if annotator else ""
            msg = "**Nothing left to grade here.** " + progress
            return (None, msg, gr.update(value=None, visible=False), gr.update(value=None, visible=False),
                    None, None, "", progress)
        q = task
        qimg = q["query_media"] if q["query_modality"] == "image" else None
        qaud = q["query_media"] if q["query_modality"] == "audio" else None
        qtext = (f"**Query** `{q['qid']}` ({q['query_modality']})"
                 + (f": “{q['query_text']}”" if q.get("query_text") else ""))
        item_img = self.media.get(q["item_id"], "image")
        item_aud = self.media.get(q["item_id"], "audio")
        item_md = (f"**Result** `{q['item_id']}` (found in {q['item_modality']}, best rank {q['best_rank']})"
                   + (f"\n\n> {q['caption']}" if q.get("caption") else "")
                   + "\n\nHow relevant is this result to the query? Keys **0–3** grade, **u** undoes.")
        return (task, qtext, gr.update(value=qimg, visible=qimg is not None),
                gr.update(value=qaud, visible=qaud is not None), item_img, item_aud, item_md,
                progress_markdown(self.labelling.progress(annotator), annotator))

    @gr_errors
    def label_next(self, name, source, state, profile: gr.OAuthProfile | None = None,
                   request: gr.Request = None):
        annotator = self.resolve_annotator(name, profile, request)
        query_id = None
        if source == "current search":
            query_id = self.labelling.label_search(state, annotator=annotator)
        task = self.labelling.next_task(annotator, query=query_id)
        return (annotator,) + self.task_outputs(task, annotator)

    @gr_errors
    def label_grade(self, grade: int, annotator, task, source, state):
        if not annotator or not task:
            raise InputError("press “Next” (or type your name first) to get something to grade")
        self.labelling.grade(task, grade=grade, annotator=annotator)
        query_id = task["query_id"] if source == "current search" else None
        nxt = self.labelling.next_task(annotator, query=query_id)
        return self.task_outputs(nxt, annotator)

    @gr_errors
    def label_undo(self, annotator, task):
        if not annotator:
            raise InputError("nothing to undo yet")
        restored = self.labelling.undo(annotator)
        if restored is None:
            raise InputError("nothing to undo")
        return self.task_outputs(restored, annotator)
