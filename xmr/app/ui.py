"""The Gradio Blocks of the app: Search, Explore, Label and Evaluate over one RetrievalService.

Layout and wiring only: every callback converts Gradio values to plain ones, calls the service and
turns its errors into ``gr.Error`` messages (the app keeps serving). Per-visitor state (the current
query and results, the annotator's current task) lives in ``gr.State``; the service is shared.
Every event has an ``api_name`` so that ``gradio_client`` can drive the app.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xmr import MODALITIES
from xmr.app.service import EncodedQuery, RetrievalService
from xmr.errors import InputError, XmrError

log = logging.getLogger(__name__)

# Result slots drawn in the page (the API may ask for up to ServiceConfig.max_k).
UI_MAX_K = 20
GRADES = {0: "0 · not relevant", 1: "1 · somewhat", 2: "2 · relevant", 3: "3 · highly relevant"}

CSS = """
.result-slot {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 4px;}
.result-slot img {object-fit: contain; background: white;}
#label-item img, #label-query-image img {object-fit: contain; background: white;}
.grade-btn {min-width: 120px;}
"""

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


def _gr_errors(fn: Callable) -> Callable:
    """Turn the service's one-line errors (and unexpected ones) into ``gr.Error`` messages."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except XmrError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # keep serving; say what failed without a traceback page
            raise gr.Error(f"something went wrong: {type(err).__name__}: {str(err)[:200]}") from err

    return wrapper


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(float(seconds), 0.0)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def hit_markdown(hit: dict[str, Any]) -> str:
    """The text of one result card."""
    head = (f"**#{hit['rank']}** · similarity **{hit['score']:.3f}** · matched in "
            f"{hit['modality']} · `{hit['item_id']}`")
    lines = [head]
    if hit.get("query_offset") is not None:
        lines.append(f"best-matching part of your clip starts at **{_fmt_time(hit['query_offset'])}**")
    if hit.get("track_offset") is not None:
        lines.append(f"match in this track at **{_fmt_time(hit['track_offset'])}**")
    if hit.get("caption"):
        lines.append(f"> {hit['caption']}")
    details = hit.get("details") or {}
    if details:
        lines.append(" · ".join(f"{k}: {v}" for k, v in details.items()))
    return "\n\n".join(lines)


def progress_markdown(progress: dict[str, int], annotator: str) -> str:
    """One line of labelling progress."""
    return (f"Annotator **{annotator}**: {progress['judged']} graded over {progress['queries']} queries; "
            f"{progress['remaining']} pooled results left for you.")


def _num(x: Any, digits: int = 3) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    return "n/a" if x != x else f"{x:.{digits}f}"


_SPLIT_COLUMNS = ("R@1", "R@5", "R@10", "MRR", "MedR", "mAP")


def split_markdown(report: dict[str, Any]) -> str:
    """The metrics table of :meth:`RetrievalService.test_split_report` with the chance line."""
    dirs = report.get("directions", {})
    if not dirs:
        return "No direction could be evaluated (the split needs items with two or more views)."
    lines = [f"### Automatic evaluation: {report.get('split', 'test')} split, one-to-one relevance",
             "| direction | queries | candidates | " + " | ".join(_SPLIT_COLUMNS)
             + " | chance R@1 | chance MRR |",
             "|---|---:|---:|" + "---:|" * (len(_SPLIT_COLUMNS) + 2)]
    for d, v in dirs.items():
        m = v["metrics"]
        chance = m.get("chance", {})
        cells = [_num(m.get(c), 1 if c == "MedR" else 3) for c in _SPLIT_COLUMNS]
        label = f"{d} (untrained)" if d in report.get("untrained", ()) else d
        lines.append(f"| {label} | {v['n_queries']} | {v['n_candidates']} | " + " | ".join(cells)
                     + f" | {_num(chance.get('R@1'), 4)} | {_num(chance.get('MRR'), 4)} |")
    if report.get("untrained"):
        lines.append("\n*Untrained*: this checkpoint was made from pretrained towers without training; "
                     "these directions join towers that share no space, so their scores are near chance.")
    return "\n".join(lines)


def human_markdown(sets: list[dict[str, Any]]) -> str:
    """The human-label evaluation sets and their agreement."""
    if not sets:
        return ("### Human labels\nNo evaluation set yet: grade some results in the Label tab "
                "(the pooled queue fills the set `demo`).")
    lines = ["### Human labels (trec_eval definitions; unjudged results count as not relevant)",
             "| set | queries | judged queries | grades | nDCG@10 | MAP | P@10 | R@10 | judged@10 | "
             "double-graded | Fleiss κ | Krippendorff α |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sets:
        m = s.get("mean") or {}
        a = s.get("agreement") or {}
        lines.append(f"| {s['name']} | {s['n_queries']} | {s['n_judged_queries']} | {s['n_judgements']} | "
                     f"{_num(m.get('ndcg_cut_10'))} | {_num(m.get('map'))} | {_num(m.get('P_10'))} | "
                     f"{_num(m.get('recall_10'))} | {_num(m.get('judged_10'), 1)} | "
                     f"{a.get('n_items', '–')} | "
                     f"{_num(a.get('fleiss_kappa'))} | {_num(a.get('krippendorff_alpha'))} |")
    return "\n".join(lines)


def compare_markdown(result: dict[str, Any]) -> str:
    """Two checkpoints side by side with the paired tests on reciprocal rank."""
    lines = [f"### Comparison on {result['n_items']} shared items: A = `{result['a'][:12]}` (loaded), "
             f"B = `{str(result['b'])[:12]}`",
             "| direction | MRR A | MRR B | R@1 A | R@1 B | p (randomization) | p (t-test) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for d, r in result["directions"].items():
        t = r["test"]
        lines.append(f"| {d} | {_num(r['a']['MRR'])} | {_num(r['b']['MRR'])} | {_num(r['a']['R@1'])} | "
                     f"{_num(r['b']['R@1'])} | {_num(t['randomization'].get('p_value'), 4)} | "
                     f"{_num(t['t_test'].get('p_value'), 4)} |")
    return "\n".join(lines)


def build_blocks(service: RetrievalService):
    """Build the four tabs over ``service``; returns the ``gr.Blocks``."""
    import gradio as gr

    targets_all = service.targets()
    max_k = min(service.config.max_k, UI_MAX_K)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xmr-media")

    def media_or_none(item_id: str, modality: str) -> str | None:
        # a card without its picture or clip is better than no results: log and go on
        try:
            return str(service.media(item_id, modality))
        except Exception as err:
            log.warning("cannot show the %s of %s: %s", modality, item_id, err)
            return None

    # ------------------------------------------------------------------ callbacks: search

    @_gr_errors
    def run_search(audio, image, text, w_audio, w_image, w_text, targets, k):
        if not targets:
            raise InputError("choose at least one target modality (audio, image or text) to search in")
        query = service.encode_query(audio=audio, image=image, text=text,
                                     weights={"audio": w_audio, "image": w_image, "text": w_text})
        results = [service.hit_dict(h) for h in service.search(query, targets=targets, k=int(k))]
        inputs = {"text": text if isinstance(text, str) and text.strip() else None,
                  "audio": _payload_path(audio), "image": _payload_path(image)}
        state = {"query": query.to_dict(), "inputs": inputs, "hits": results,
                 "fingerprint": service.fingerprint}
        status = f"**{len(results)} results** for a query of {query.description} in {', '.join(targets)}."
        if query.notes:
            status += " " + "; ".join(query.notes) + "."
        return results, state, status

    def show_results(results):
        # cards at once with what is ready; pictures still to render come in the next step
        results = results or []
        images = [service.media_if_ready(h["item_id"], "image") for h in results[:max_k]]
        images = [None if p is None else str(p) for p in images]
        out = []
        for i in range(max_k):
            if i < len(results):
                out += [gr.update(visible=True), images[i], hit_markdown(results[i])]
            else:
                out += [gr.update(visible=False), None, ""]
        return out

    def load_result_images(results):
        results = results or []
        images = list(pool.map(lambda h: media_or_none(h["item_id"], "image"), results[:max_k]))
        return [images[i] if i < len(images) else None for i in range(max_k)]

    def load_result_audio(results):
        results = results or []
        audio = list(pool.map(lambda h: media_or_none(h["item_id"], "audio"), results[:max_k]))
        return [audio[i] if i < len(audio) else None for i in range(max_k)]

    @_gr_errors
    def use_result(slot: int, results, use_as):
        results = results or []
        if slot >= len(results):
            raise InputError("there is no result in that place any more; run the search again")
        return fill_from_item(results[slot]["item_id"], use_as)

    @_gr_errors
    def fill_from_item(item_id, use_as):
        """Put an item's audio, image or first caption into the query inputs (the others cleared)."""
        use_as = use_as or "audio"
        if use_as == "text":
            caps = service.captions(item_id)
            if not caps:
                raise InputError(f"item {item_id} has no caption")
            return None, None, caps[0]
        if use_as not in ("audio", "image"):
            raise InputError(f"cannot use an item's {use_as!r} as a query")
        path = str(service.media(item_id, use_as))
        return (path, None, "") if use_as == "audio" else (None, path, "")

    # ------------------------------------------------------------------ callbacks: explore

    @_gr_errors
    def draw_map(dims, color_by, max_points, show_query, state):
        query = None
        if show_query and state and state.get("query"):
            query = EncodedQuery.from_dict(state["query"])
        d = 3 if str(dims).startswith("3") else 2
        fig = service.map_figure(dims=d, color_by=color_by, max_points=int(max_points), query=query)
        basis = service.pca()
        text = (f"PCA fitted on {basis.n_fit} indexed vectors of {', '.join(targets_all)}; explained "
                f"variance: {basis.describe()}.")
        if query is not None:
            text += " The black star is your current query, projected with the same basis."
        elif show_query:
            text += " Run a search to see your query in the map."
        return fig, text

    # ------------------------------------------------------------------ callbacks: label

    def resolve_annotator(name, profile, request) -> str:
        if profile is not None and getattr(profile, "username", None):
            return str(profile.username)
        user = getattr(request, "username", None) if request is not None else None
        if user:
            return str(user)
        return service.annotator_name(name)

    def task_outputs(task, annotator):
        if task is None:
            progress = progress_markdown(service.label_progress(annotator), annotator) if annotator else ""
            msg = "**Nothing left to grade here.** " + progress
            return (None, msg, gr.update(value=None, visible=False), gr.update(value=None, visible=False),
                    None, None, "", progress)
        q = task
        qimg = q["query_media"] if q["query_modality"] == "image" else None
        qaud = q["query_media"] if q["query_modality"] == "audio" else None
        qtext = (f"**Query** `{q['qid']}` ({q['query_modality']})"
                 + (f": “{q['query_text']}”" if q.get("query_text") else ""))
        item_img = media_or_none(q["item_id"], "image")
        item_aud = media_or_none(q["item_id"], "audio")
        item_md = (f"**Result** `{q['item_id']}` (found in {q['item_modality']}, best rank {q['best_rank']})"
                   + (f"\n\n> {q['caption']}" if q.get("caption") else "")
                   + "\n\nHow relevant is this result to the query? Keys **0–3** grade, **u** undoes.")
        return (task, qtext, gr.update(value=qimg, visible=qimg is not None),
                gr.update(value=qaud, visible=qaud is not None), item_img, item_aud, item_md,
                progress_markdown(service.label_progress(annotator), annotator))

    @_gr_errors
    def label_next(name, source, state, profile: gr.OAuthProfile | None = None,
                   request: gr.Request = None):
        annotator = resolve_annotator(name, profile, request)
        query_id = None
        if source == "current search":
            query_id = service.label_search(state, annotator=annotator)
        task = service.next_task(annotator, query=query_id)
        return (annotator,) + task_outputs(task, annotator)

    @_gr_errors
    def label_grade(grade: int, annotator, task, source, state):
        if not annotator or not task:
            raise InputError("press “Next” (or type your name first) to get something to grade")
        service.grade(task, grade=grade, annotator=annotator)
        query_id = task["query_id"] if source == "current search" else None
        nxt = service.next_task(annotator, query=query_id)
        return task_outputs(nxt, annotator)

    @_gr_errors
    def label_undo(annotator, task):
        if not annotator:
            raise InputError("nothing to undo yet")
        restored = service.undo(annotator)
        if restored is None:
            raise InputError("nothing to undo")
        return task_outputs(restored, annotator)

    # ------------------------------------------------------------------ callbacks: evaluate

    @_gr_errors
    def evaluate(compare_path):
        from xmr.viz import pr_curve_figure, rank_cdf_figure

        report = service.test_split_report()
        dirs = report["directions"]
        cdf = rank_cdf_figure({d: v["ranks"] for d, v in dirs.items()},
                              n_candidates={d: v["n_candidates"] for d, v in dirs.items()})
        pr = pr_curve_figure({d: (v["metrics"]["PR"]["recall"], v["metrics"]["PR"]["precision"])
                              for d, v in dirs.items()})
        human = human_markdown(service.human_eval()) if service.labels is not None else ""
        compare = ""
        if compare_path and str(compare_path).strip():
            compare = compare_markdown(service.compare(str(compare_path).strip()))
        return split_markdown(report), cdf, pr, human, compare

    # ------------------------------------------------------------------ layout

    with gr.Blocks(title="xmr — cross-modal music retrieval", analytics_enabled=False) as demo:
        query_state = gr.State(None)  # this visitor's current query and results
        annotator_state = gr.State(None)
        task_state = gr.State(None)
        gr.Markdown("# xmr — music, score images and text in one space\n"
                    f"Model `{service.fingerprint[:12]}` · {len(service.manifest)} items · indexes: "
                    f"{', '.join(targets_all)}")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=240):
                        audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                            label="Music clip (upload or record)", elem_id="q-audio")
                        w_audio = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the clip",
                                            elem_id="w-audio")
                    with gr.Column(min_width=240):
                        image_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                                            label="Image (score snippet, cover, photo)", elem_id="q-image",
                                            height=200)
                        w_image = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the image",
                                            elem_id="w-image")
                    with gr.Column(min_width=240):
                        text_in = gr.Textbox(label="Text", lines=3, elem_id="q-text",
                                             placeholder="e.g. a lively reel on fiddle in D major")
                        w_text = gr.Slider(-1, 2, value=1.0, step=0.1, label="weight of the text",
                                           elem_id="w-text")
                with gr.Row():
                    # (label, value) pairs: a bare "audio" label is taken for a Gradio translation key
                    targets = gr.CheckboxGroup([(t.capitalize(), t) for t in targets_all],
                                               value=[t for t in ("audio", "image")
                                                                   if t in targets_all] or targets_all,
                                               label="Search in", elem_id="targets")
                    k_in = gr.Slider(1, max_k, value=min(8, max_k), step=1, label="results (k)", elem_id="k")
                    use_as = gr.Radio([("Audio", "audio"), ("Image", "image"), ("Caption", "text")],
                                      value="audio",
                                      label="“Use as query” takes the result's", elem_id="use-as")
                with gr.Row():
                    search_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
                    clear_btn = gr.Button("Clear", elem_id="clear-btn")
                with gr.Accordion("Example queries from the test split (one click runs them)", open=True):
                    example_buttons = []
                    for m in MODALITIES:
                        with gr.Row():
                            for n, item_id in enumerate(service.examples(m, 3)):
                                b = gr.Button(f"{m} example {n + 1}", size="sm",
                                              elem_id=f"example-{m}-{n}")
                                example_buttons.append((b, m, item_id))
                status = gr.Markdown(elem_id="search-status")
                slots = []
                with gr.Column(elem_id="results"):
                    for row_start in range(0, max_k, 2):
                        with gr.Row(equal_height=True):
                            for i in range(row_start, min(row_start + 2, max_k)):
                                with gr.Group(visible=False, elem_classes="result-slot",
                                              elem_id=f"res-{i}") as box, gr.Row():
                                    img = gr.Image(type="filepath", interactive=False, show_label=False,
                                                   height=170, elem_id=f"res-img-{i}", container=False)
                                    with gr.Column():
                                        md = gr.Markdown(elem_id=f"res-md-{i}")
                                        aud = gr.Audio(type="filepath", interactive=False, show_label=False,
                                                       elem_id=f"res-audio-{i}")
                                        use = gr.Button("Use as query", size="sm", elem_id=f"res-use-{i}")
                                slots.append((box, img, md, aud, use))
                with gr.Accordion("Results as JSON", open=False):
                    results_json = gr.JSON(label="results", elem_id="results-json")

            with gr.Tab("Explore", id="explore") as explore_tab:
                with gr.Row():
                    dims = gr.Radio(["2-D", "3-D"], value="2-D", label="map", elem_id="map-dims")
                    color_by = gr.Dropdown(service.color_columns(), value="modality", label="colour by",
                                           elem_id="map-color")
                    max_points = gr.Slider(100, 5000, value=1500, step=100, label="points per modality",
                                           elem_id="map-points")
                    show_query = gr.Checkbox(True, label="draw the current query", elem_id="map-query")
                    draw_btn = gr.Button("Draw", elem_id="map-draw")
                map_plot = gr.Plot(elem_id="pca-plot", label="PCA of the shared space")
                map_md = gr.Markdown(elem_id="map-info")

            with gr.Tab("Label", id="label"):
                gr.Markdown("Grade how relevant each result is to its query (0 = not relevant … "
                            "3 = highly relevant). Each grade is saved at once; keys **0–3** grade, **u** "
                            "undoes the last grade, **n** asks for the next one.")
                with gr.Row():
                    if (os.environ.get("SYSTEM") == "spaces" and os.environ.get("SPACE_ID")
                            and os.environ.get("OAUTH_CLIENT_ID")):
                        # a Space with hf_oauth: true (Spaces set SYSTEM and the OAUTH_* variables)
                        gr.LoginButton()
                    name_in = gr.Textbox(label="Your name (annotator)", elem_id="annotator",
                                         placeholder="e.g. ada", scale=2)
                    source = gr.Radio(["pooled queue", "current search"], value="pooled queue",
                                      label="What to grade", elem_id="label-source", scale=2)
                    next_btn = gr.Button("Next", variant="primary", elem_id="label-next", scale=1)
                progress_md = gr.Markdown(elem_id="label-progress")
                with gr.Row():
                    with gr.Column():
                        query_md = gr.Markdown(elem_id="label-query")
                        query_img = gr.Image(interactive=False, show_label=False, visible=False, height=200,
                                             elem_id="label-query-image", type="filepath")
                        query_aud = gr.Audio(interactive=False, show_label=False, visible=False,
                                             elem_id="label-query-audio", type="filepath")
                    with gr.Column():
                        item_img = gr.Image(interactive=False, show_label=False, height=200,
                                            elem_id="label-item", type="filepath")
                        item_aud = gr.Audio(interactive=False, show_label=False, elem_id="label-item-audio",
                                            type="filepath")
                        item_md = gr.Markdown(elem_id="label-item-text")
                with gr.Row():
                    grade_btns = [gr.Button(GRADES[g], elem_id=f"grade-{g}", elem_classes="grade-btn")
                                  for g in range(4)]
                    undo_btn = gr.Button("Undo (u)", elem_id="label-undo")

            with gr.Tab("Evaluate", id="evaluate") as eval_tab:
                gr.Markdown("Metrics of the loaded model on the demo test split (each item's audio, image "
                            "and caption are each other's relevant items; computed once and cached), and on "
                            "each human-labelled evaluation set.")
                with gr.Row():
                    compare_in = gr.Textbox(label="second checkpoint to compare (optional folder)",
                                            value=str(service.config.compare_checkpoint or ""),
                                            elem_id="compare-path", scale=3)
                    eval_btn = gr.Button("Compute", variant="primary", elem_id="eval-run", scale=1)
                eval_md = gr.Markdown(elem_id="eval-auto")
                with gr.Row():
                    cdf_plot = gr.Plot(elem_id="eval-cdf", label="rank CDF")
                    pr_plot = gr.Plot(elem_id="eval-pr", label="precision–recall")
                human_md = gr.Markdown(elem_id="eval-human")
                compare_md = gr.Markdown(elem_id="eval-compare")

        # -------------------------------------------------------------- wiring
        slot_outputs = [c for (box, img, md, _, _) in slots for c in (box, img, md)]
        audio_outputs = [aud for (_, _, _, aud, _) in slots]
        image_outputs = [img for (_, img, _, _, _) in slots]
        search_inputs = [audio_in, image_in, text_in, w_audio, w_image, w_text, targets, k_in]
        search_outputs = [results_json, query_state, status]

        def chain_search(event, suffix: str):
            """After ``event`` fills the inputs: search, draw the cards, then fetch their audio."""
            return (event.success(run_search, search_inputs, search_outputs,
                                  api_name=f"search_{suffix}", api_visibility="undocumented",
                                  preprocess=False)
                    .success(show_results, results_json, slot_outputs, api_name=f"show_results_{suffix}",
                             api_visibility="undocumented")
                    .success(load_result_images, results_json, image_outputs,
                             api_name=f"result_images_{suffix}", api_visibility="undocumented")
                    .success(load_result_audio, results_json, audio_outputs,
                             api_name=f"result_audio_{suffix}", api_visibility="undocumented"))

        # preprocess=False: uploads reach xmr.media untouched, so a corrupt file gets our message
        (search_btn.click(run_search, search_inputs, search_outputs, api_name="search", preprocess=False)
         .success(show_results, results_json, slot_outputs, api_name="show_results")
         .success(load_result_images, results_json, image_outputs, api_name="result_images")
         .success(load_result_audio, results_json, audio_outputs, api_name="result_audio"))
        text_in.submit(run_search, search_inputs, search_outputs, api_name="search_submit",
                       api_visibility="undocumented", preprocess=False) \
            .success(show_results, results_json, slot_outputs, api_name="show_results_submit",
                     api_visibility="undocumented") \
            .success(load_result_images, results_json, image_outputs, api_name="result_images_submit",
                     api_visibility="undocumented") \
            .success(load_result_audio, results_json, audio_outputs, api_name="result_audio_submit",
                     api_visibility="undocumented")
        clear_btn.click(lambda: (None, None, "", 1.0, 1.0, 1.0, None, None, ""), None,
                        [audio_in, image_in, text_in, w_audio, w_image, w_text, results_json, query_state,
                         status], api_name="clear").then(show_results, results_json, slot_outputs,
                                                         api_name="show_results_clear",
                                                         api_visibility="undocumented")
        for i, (_, _, _, _, use) in enumerate(slots):
            ev = use.click(functools.partial(use_result, i), [results_json, use_as],
                           [audio_in, image_in, text_in], api_name=f"use_result_{i}",
                           api_visibility="undocumented")
            chain_search(ev, f"use_{i}")
        item_id_in = gr.Textbox(visible=False)
        use_item_btn = gr.Button(visible=False)
        chain_search(use_item_btn.click(fill_from_item, [item_id_in, use_as], [audio_in, image_in, text_in],
                                        api_name="use_item"), "use_item")
        for b, m, item_id in example_buttons:
            ev = b.click(functools.partial(fill_from_item, item_id, m), None, [audio_in, image_in, text_in],
                         api_name=f"example_{m}_{b.elem_id.rsplit('-', 1)[1]}", api_visibility="undocumented")
            chain_search(ev, f"ex_{m}_{b.elem_id.rsplit('-', 1)[1]}")

        map_inputs = [dims, color_by, max_points, show_query, query_state]
        draw_btn.click(draw_map, map_inputs, [map_plot, map_md], api_name="explore")
        explore_tab.select(draw_map, map_inputs, [map_plot, map_md], api_name="explore_tab",
                           api_visibility="undocumented")
        for control in (dims, color_by):
            control.change(draw_map, map_inputs, [map_plot, map_md], api_name=f"explore_{control.elem_id}",
                           api_visibility="undocumented")
        max_points.release(draw_map, map_inputs, [map_plot, map_md], api_name="explore_points",
                           api_visibility="undocumented")

        task_view = [task_state, query_md, query_img, query_aud, item_img, item_aud, item_md, progress_md]
        next_btn.click(label_next, [name_in, source, query_state], [annotator_state] + task_view,
                       api_name="label_next")
        for g, b in enumerate(grade_btns):
            b.click(functools.partial(label_grade, g), [annotator_state, task_state, source, query_state],
                    task_view, api_name=f"grade_{g}")
        undo_btn.click(label_undo, [annotator_state, task_state], task_view, api_name="label_undo")

        eval_outputs = [eval_md, cdf_plot, pr_plot, human_md, compare_md]
        eval_btn.click(evaluate, [compare_in], eval_outputs, api_name="evaluate")
        eval_tab.select(evaluate, [compare_in], eval_outputs, api_name="evaluate_tab",
                        api_visibility="undocumented")
        demo.load(None, None, None, js=SHORTCUTS_JS)
    demo.xmr_service = service  # for launch options and tests; not per-visitor state
    return demo


def _payload_path(payload: Any) -> str | None:
    if isinstance(payload, dict):
        return payload.get("path")
    if isinstance(payload, (str, Path)) and str(payload):
        return str(payload)
    return None
