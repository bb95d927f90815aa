"""The Evaluate tab: split metrics with rank-CDF and precision–recall plots, the human-label sets,
and an optional comparison with a second checkpoint."""

from __future__ import annotations

import gradio as gr

from xmr.app.evaluation import Evaluation
from xmr.app.labelling import Labelling
from xmr.app.tabs.common import gr_errors
from xmr.app.tabs.format import compare_markdown, human_markdown, split_markdown

__all__ = ["EvaluateTab"]


class EvaluateTab:
    """Layout, callback and wiring of the Evaluate tab.

    Args:
        evaluation: split metrics and checkpoint comparison.
        labelling: the human-label sets (not shown when the app has no label store).
    """

    def __init__(self, evaluation: Evaluation, labelling: Labelling):
        self.evaluation = evaluation
        self.labelling = labelling

    def build(self, tab: gr.Tab) -> None:
        """Lay the tab out in ``tab`` (the current ``gr.Tab``) and wire its events; the metrics are
        computed when the tab is opened."""
        gr.Markdown("Metrics of the loaded model on the demo test split (each item's audio, image "
                    "and caption are each other's relevant items; computed once and cached), and on "
                    "each human-labelled evaluation set.")
        with gr.Row():
            compare_in = gr.Textbox(label="second checkpoint to compare (optional folder)",
                                    value=str(self.evaluation.service.config.compare_checkpoint or ""),
                                    elem_id="compare-path", scale=3)
            eval_btn = gr.Button("Compute", variant="primary", elem_id="eval-run", scale=1)
        eval_md = gr.Markdown(elem_id="eval-auto")
        with gr.Row():
            cdf_plot = gr.Plot(elem_id="eval-cdf", label="rank CDF")
            pr_plot = gr.Plot(elem_id="eval-pr", label="precision–recall")
        human_md = gr.Markdown(elem_id="eval-human")
        compare_md = gr.Markdown(elem_id="eval-compare")

        outputs = [eval_md, cdf_plot, pr_plot, human_md, compare_md]
        eval_btn.click(self.evaluate, [compare_in], outputs, api_name="evaluate")
        tab.select(self.evaluate, [compare_in], outputs, api_name="evaluate_tab",
                   api_visibility="undocumented")

    @gr_errors
    def evaluate(self, compare_path):
        from xmr.viz import pr_curve_figure, rank_cdf_figure

        report = self.evaluation.test_split_report()
        dirs = report["directions"]
        cdf = rank_cdf_figure({d: v["ranks"] for d, v in dirs.items()},
                              n_candidates={d: v["n_candidates"] for d, v in dirs.items()})
        pr = pr_curve_figure({d: (v["metrics"]["PR"]["recall"], v["metrics"]["PR"]["precision"])
                              for d, v in dirs.items()})
        human = human_markdown(self.labelling.human_eval()) if self.labelling.available else ""
        compare = ""
        if compare_path and str(compare_path).strip():
            compare = compare_markdown(self.evaluation.compare(str(compare_path).strip()))
        return split_markdown(report), cdf, pr, human, compare
