"""The text of the page: result cards, labelling progress and the metric tables, as Markdown.

Plain functions of plain values (no gradio), shared by the tabs and tested without a browser.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compare_markdown", "fmt_time", "hit_markdown", "human_markdown", "progress_markdown",
           "split_markdown"]


def fmt_time(seconds: float | None) -> str:
    """``m:ss.s`` of a time in seconds (empty for ``None``)."""
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
        lines.append(f"best-matching part of your clip starts at **{fmt_time(hit['query_offset'])}**")
    if hit.get("track_offset") is not None:
        lines.append(f"match in this track at **{fmt_time(hit['track_offset'])}**")
    bars = hit.get("bars")
    if bars:
        lines.append(f"best-matching **{bars['label']}** of {bars['n_bars']} (highlighted on the score; "
                     f"{fmt_time(bars['onset'])}–{fmt_time(bars['end'])} in its audio)")
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
    """The metrics table of :meth:`xmr.app.evaluation.Evaluation.test_split_report` with the chance line."""
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
