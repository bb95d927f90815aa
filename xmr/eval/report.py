"""Reports of an evaluation: ``metrics.json`` (every number), ``metrics.md`` (tables with the
candidate-set size and the random-chance line) and PNG plots (rank CDF per direction as in
Nakatsuka et al. 2023, Fig. 5, and the interpolated precision-recall curve), drawn with matplotlib's
Agg backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmr.eval.directions import split_direction
from xmr.eval.evaluate import Evaluation
from xmr.eval.metrics import RECALL_LEVELS, chance_rank_cdf

PROTOCOL_TITLES = {
    "item": "same item relevant (one-to-one; multi-positive where an item has several captions)",
    "caption": "items sharing a caption string are relevant",
    "graded": "graded: number of matching metadata attributes (nDCG only)",
}


def _fmt(v: Any) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    return str(v)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def _fmt_cell(name: str, v: Any) -> str:
    if name in ("MedR", "MeanR") and isinstance(v, (float, np.floating)) and not math.isnan(v):
        return f"{v:.1f}"
    return _fmt(v)


def _metric_columns(ks, protocol: str) -> list[str]:
    if protocol == "graded":
        return [f"nDCG@{k}" for k in ks]
    cols = [f"R@{k}" for k in ks] + ["MRR", "MedR", "MeanR", "mAP", "mAP@10"]
    cols += [f"nDCG@{k}" for k in ks if k == 10] or [f"nDCG@{ks[-1]}"]
    return cols


def markdown_tables(metrics: Mapping[str, Any]) -> str:
    """Markdown tables of every protocol: one row per direction followed by its chance row."""
    ks = metrics.get("ks", [1, 5, 10])
    lines: list[str] = []
    for protocol, dirs in metrics.get("protocols", {}).items():
        cols = _metric_columns(ks, protocol)
        lines += [f"### Protocol `{protocol}`: {PROTOCOL_TITLES.get(protocol, protocol)}", ""]
        lines.append("| direction | queries | candidates | " + " | ".join(cols) + " |")
        lines.append("| --- | ---: | ---: | " + " | ".join("---:" for _ in cols) + " |")
        for direction, m in dirs.items():
            lines.append(f"| {direction} | {m['n_queries']} | {m['n_candidates']} | "
                         + " | ".join(_fmt_cell(c, m.get(c, float("nan"))) for c in cols) + " |")
            chance = m.get("chance", {})
            cells = [f"*{_fmt_cell(c, chance.get(c, float('nan')))}*" for c in cols]
            lines.append("| *chance* | | | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _compare_table(compare: Mapping[str, Any]) -> str:
    lines = ["| protocol | direction | metric | this | other | difference | p (randomization) | p (t-test) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for protocol, dirs in compare.items():
        for direction, by_metric in dirs.items():
            for name, r in by_metric.items():
                lines.append(
                    f"| {protocol} | {direction} | {name} | {_fmt(r['mean_a'])} | {_fmt(r['mean_b'])} | "
                    f"{r['mean_a'] - r['mean_b']:+.3f} | {r['randomization']['p_value']:.4f} | "
                    f"{r['t_test']['p_value']:.4f} |")
    return "\n".join(lines)


def _qrels_table(result: Mapping[str, Any]) -> str:
    m = result["measures"]
    names = ["nDCG@10", "MAP", "P@10", "R@10", "judged@10"]
    rule = " | ".join("---:" for _ in names) + " |"
    lines = ["| queries | " + " | ".join(names) + " |", "| ---: | " + rule,
             f"| {result['n_queries']} | " + " | ".join(_fmt(m[n]) for n in names) + " |", "",
             "| qid | " + " | ".join(names) + " |", "| --- | " + rule]
    for qid, vals in result["per_query"].items():
        lines.append(f"| {qid} | " + " | ".join(_fmt(vals[n]) for n in names) + " |")
    return "\n".join(lines)


def _pair_panels(dirs: Mapping[str, Any]) -> list[list[str]]:
    """Directions grouped by their pair of views: ``[["audio→image", "image→audio"], ...]``."""
    groups: dict[frozenset, list[str]] = {}
    for direction in dirs:
        groups.setdefault(frozenset(split_direction(direction)), []).append(direction)
    return list(groups.values())


def _panel_figure(n_panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, max(1, n_panels))
    rows = math.ceil(max(1, n_panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat)


def _save(plt, fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _cdf(pq, x: np.ndarray) -> np.ndarray:
    ranks = np.sort(pq.first_rank[pq.valid])
    return np.searchsorted(ranks, x, side="right") / max(1, len(ranks))


def plot_rank_cdf(ev: Evaluation, path, *, protocol: str = "item", other: Evaluation | None = None,
                  other_label: str = "other") -> Path:
    """Rank CDF per direction (Nakatsuka et al. 2023, Fig. 5), one panel per pair of views: the share
    of queries whose first relevant item is at rank <= x; dashed: a random ranking; dotted: ``other``."""
    dirs = ev.per_query.get(protocol, {})
    panels = _pair_panels(dirs)
    plt, fig, axes = _panel_figure(len(panels))
    colours = ("tab:blue", "tab:orange")
    for ax, group in zip(axes, panels, strict=False):
        for colour, direction in zip(colours, group, strict=False):
            pq = dirs[direction]
            n = pq.n_candidates
            x = np.arange(1, n + 1)
            ax.plot(x, _cdf(pq, x), color=colour, label=f"{direction} (N={n})")
            ax.plot(x, chance_rank_cdf(pq)[1:], color=colour, linestyle="--", linewidth=0.9, alpha=0.7)
            if other is not None and direction in other.per_query.get(protocol, {}):
                ax.plot(x, _cdf(other.per_query[protocol][direction], x), color=colour, linestyle=":",
                        label=f"{other_label}")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("rank of the first relevant item")
        ax.set_ylabel("share of queries")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Rank CDF, {protocol} relevance (dashed: random ranking)", fontsize=10)
    return _save(plt, fig, path)


def plot_pr_curve(ev: Evaluation, path, *, protocol: str = "item", other: Evaluation | None = None,
                  other_label: str = "other") -> Path:
    """Mean interpolated precision at the 11 recall levels, one panel per pair of views; the
    dotted horizontal line is the share of relevant candidates (a random ranking's precision)."""
    dirs = ev.per_query.get(protocol, {})
    panels = _pair_panels(dirs)
    plt, fig, axes = _panel_figure(len(panels))
    colours = ("tab:blue", "tab:orange")
    for ax, group in zip(axes, panels, strict=False):
        for colour, direction in zip(colours, group, strict=False):
            pq = dirs[direction]
            prec = np.mean(pq.iprec[pq.valid], axis=0)
            ax.plot(RECALL_LEVELS, prec, marker="o", markersize=3, color=colour, label=direction)
            base = float(np.mean(pq.n_relevant[pq.valid] / pq.n_candidates))
            ax.axhline(base, color=colour, linestyle=":", linewidth=0.9, alpha=0.7)
            if other is not None and direction in other.per_query.get(protocol, {}):
                opq = other.per_query[protocol][direction]
                ax.plot(RECALL_LEVELS, np.mean(opq.iprec[opq.valid], axis=0), color=colour, linestyle="--",
                        label=f"{other_label}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("recall")
        ax.set_ylabel("interpolated precision")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Precision-recall, {protocol} relevance (dotted: random)", fontsize=10)
    return _save(plt, fig, path)


def write_report(ev: Evaluation | None, out_dir, *, other: Evaluation | None = None,
                 other_label: str = "compare", compare: Mapping[str, Any] | None = None,
                 qrels_result: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.md`` and the plots into ``out_dir``; returns their paths.

    Args:
        ev: the evaluation of the automatic split (None when only human labels were scored).
        out_dir: output folder (created).
        other: the evaluation of a second checkpoint (drawn dotted/dashed, its numbers in the JSON).
        other_label: its name in legends and tables.
        compare: :func:`xmr.eval.evaluate.compare_evaluations` of the two.
        qrels_result: :func:`xmr.eval.evaluate.evaluate_qrels_set`'s result; its run is written
            as ``run.trec``.
    """
    from xmr.eval.trec import write_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    doc: dict[str, Any] = dict(ev.metrics) if ev is not None else {}
    md = ["# xmr evaluation", ""]
    if ev is not None:
        m = ev.metrics
        md += [f"- checkpoint: `{m.get('checkpoint')}` (fingerprint `{m.get('fingerprint')}`)",
               f"- manifest: `{m.get('manifest')}`, split `{m.get('split')}`, {m.get('n_items')} items",
               f"- caption styles: {', '.join(m.get('caption_styles', []))}",
               "- ties are broken by candidate index (ascending); queries without a relevant item are "
               "left out; *chance* rows are the expected values under a random ranking", "",
               markdown_tables(m)]
        for protocol in ev.per_query:
            if protocol == "graded":
                continue
            kw = {"protocol": protocol, "other": other, "other_label": other_label}
            paths[f"rank_cdf_{protocol}"] = plot_rank_cdf(ev, out / f"rank_cdf_{protocol}.png", **kw)
            paths[f"pr_curve_{protocol}"] = plot_pr_curve(ev, out / f"pr_curve_{protocol}.png", **kw)
        md += ["Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in paths.values()), ""]
    if other is not None:
        doc["compared_with"] = {"label": other_label, **other.metrics}
        md += [f"## Compared with `{other.metrics.get('checkpoint')}`", "", markdown_tables(other.metrics)]
    if compare:
        doc["comparison"] = compare
        md += ["### Paired tests on the same queries (this minus other)", "", _compare_table(compare), ""]
    if qrels_result is not None:
        run = qrels_result.get("run")
        if run:
            paths["run"] = write_run(run, out / "run.trec", run_name="xmr")
        doc["qrels"] = {k: v for k, v in qrels_result.items() if k != "run"}
        md += ["## Human labels", "",
               f"- qrels `{qrels_result['qrels']}`, {qrels_result['n_queries']} queries, candidates "
               + ", ".join(f"{k}: {v}" for k, v in qrels_result["n_candidates"].items())
               + "; judged@10 = judged results among the top 10 (unjudged count as not relevant)", "",
               _qrels_table(qrels_result), ""]
    paths["json"] = out / "metrics.json"
    paths["json"].write_text(json.dumps(_json_safe(doc), indent=1) + "\n", encoding="utf-8")
    paths["markdown"] = out / "metrics.md"
    paths["markdown"].write_text("\n".join(md) + "\n", encoding="utf-8")
    return paths
