"""Print the ablation table (last validation metrics of each run folder) as Markdown, with the
number of candidates and the chance level of each run's validation split.

    python scripts/ablation_table.py OUT_DIR

Runs are read in the order of ``OUT_DIR/runs.txt`` (one name a line, written by
``scripts/ablation_levers.sh``), else the runs of ``scripts/ablation.sh``. Candidates are the
validation items the run scored (``data.val_split``, at most ``data.val_max_items``); chance is the
expected MRR and R@1 of a random ranking with one relevant item among them (audio<->image).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DIRECTIONS = ("audio→image", "image→audio", "audio→text", "text→audio", "image→text", "text→image")
DEFAULT_RUNS = ("infonce", "xbm", "scfem", "3cmlf")


def _metric(v: dict, direction: str, key: str) -> float:
    for name in (direction, direction.replace("→", "->")):  # older logs wrote "audio->image"
        if f"{name}/{key}" in v:
            return float(v[f"{name}/{key}"])
    return float("nan")


def candidates(run: Path) -> int | None:
    """Validation items of a run (its config's manifest, split and cap), None when unreadable."""
    try:
        import pandas as pd

        data = json.loads((run / "config.json").read_text())["data"]
        frame = pd.read_parquet(data["manifest"], columns=["split"])
        n = int((frame["split"] == data.get("val_split", "val")).sum())
        cap = data.get("val_max_items")
        return min(n, int(cap)) if cap else n
    except Exception:  # noqa: BLE001 - a manifest moved or not Parquet: the column stays empty
        return None


def chance_mrr(n: int) -> float:
    return sum(1.0 / k for k in range(1, n + 1)) / n


def main(root: Path) -> None:
    order = root / "runs.txt"
    names = DEFAULT_RUNS
    if order.exists():
        names = [x.strip() for x in order.read_text().splitlines() if x.strip()]
    print("| run | " + " | ".join(f"{d} MRR" for d in DIRECTIONS)
          + " | a→i R@1 | candidates | chance MRR (R@1) | wall s |")
    print("|---" * (len(DIRECTIONS) + 5) + "|")
    for name in names:
        log = root / name / "log.jsonl"
        if not log.exists():
            continue
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        val = [r for r in rows if r["kind"] == "val"]
        if not val:
            continue
        v = val[-1]
        wall = json.loads((root / name / "report.json").read_text())["wall_seconds"]
        cells = [f"{_metric(v, d, 'MRR'):.3f}" for d in DIRECTIONS]
        r1 = _metric(v, "audio→image", "R@1")
        n = candidates(root / name)
        chance = f"{chance_mrr(n):.3f} ({1 / n:.3f})" if n else "?"
        print(f"| {name} | " + " | ".join(cells) + f" | {r1:.3f} | {n or '?'} | {chance} | {wall} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
