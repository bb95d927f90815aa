"""Write a manifest of the items a corpus build has finished so far (from its per-piece records), so
that training can start while ``xmr corpus build`` is still running.

    python scripts/corpus_snapshot.py data/corpus data/corpus-snapshot/manifest.parquet

Media paths in the snapshot point into the build folder (absolute), so nothing is copied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def snapshot(build: Path, out: Path) -> dict[str, int]:
    import pandas as pd

    rows = []
    for record in sorted((build / ".pieces").glob("*.json")):
        try:
            result = json.loads(record.read_text())["result"]
        except (ValueError, KeyError):
            continue  # a record being written
        for row in result["rows"]:
            media = [m for m in ("audio", "image", "audio_unseen") if row.get(m)]
            if all((build / row[m]).is_file() for m in media):
                rows.append({**row, **{m: str((build / row[m]).resolve()) for m in media}})
    if not rows:
        raise SystemExit(f"no finished items in {build}")
    df = pd.DataFrame(rows).sort_values("id", kind="stable").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(out)
    return {s: int((df["split"] == s).sum()) for s in ("train", "val", "test")}


if __name__ == "__main__":
    print(snapshot(Path(sys.argv[1]), Path(sys.argv[2])))
