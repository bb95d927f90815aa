"""Print the ablation table (last validation metrics of each run folder) as Markdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DIRECTIONS = ("audio->image", "image->audio", "audio->text", "text->audio", "image->text", "text->image")


def main(root: Path) -> None:
    print("| run | " + " | ".join(f"{d} MRR" for d in DIRECTIONS) + " | a->i R@1 | wall s |")
    print("|---" * (len(DIRECTIONS) + 3) + "|")
    for name in ("infonce", "xbm", "scfem", "3cmlf"):
        log = root / name / "log.jsonl"
        if not log.exists():
            continue
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        val = [r for r in rows if r["kind"] == "val"]
        if not val:
            continue
        v = val[-1]
        wall = json.loads((root / name / "report.json").read_text())["wall_seconds"]
        cells = [f"{v.get(f'{d}/MRR', float('nan')):.3f}" for d in DIRECTIONS]
        r1 = v.get("audio->image/R@1", float("nan"))
        print(f"| {name} | " + " | ".join(cells) + f" | {r1:.3f} | {wall} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
