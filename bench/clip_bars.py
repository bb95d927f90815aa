"""Short clips cut from test items: found by audio→image, and do the highlighted bars hold the clip?

For every item of a split that has audio, an image and a bar alignment, one clip of
``--clip-seconds`` (4 s) is cut at a seeded random offset of its audio and sent through the query
path (:func:`xmr.index.encode_query`). It is ranked against the images of every item of the split
(each embedded whole, as the index embeds them), and for each clip whose item is in the top
``--k`` (10) the best-matching bars are found as the app finds them (:class:`xmr.index.bars.BarLocator`).

Reported:

- the audio→image top-k rate of the clips (with the chance rate k / candidates) and their MRR;
  with ``--index``, each image's score is corrected by that index's hubness offset, as its search
  ranks (``IndexStore.item_shift``; ``xmr index hubness``);
- with ``--span-candidates``, the same rate and MRR when each candidate is also embedded as every
  run of 2–4 of its bars cut from its image (:func:`xmr.index.bars.candidate_spans` without a
  query length: what an index of bar spans would hold) and scores as its best vector;
- the highlight hit rate: the share of those clips whose highlighted bars contain all the clip's
  true bars (the bars the clip holds at least 0.25 s of, :func:`xmr.index.bars.bars_in`), for each
  way of matching (``--via``: the item's audio cut at its bars, as the app matches, or its image),
  with the rate a span drawn at random from the same candidate spans would reach, and the mean
  highlighted and true bar counts (a highlight of the whole score always contains the clip: the
  count says how much the highlight narrows it down).

Usage::

    python bench/clip_bars.py --manifest data/corpus-bars/manifest.parquet
    python bench/clip_bars.py --checkpoint runs/model --manifest m.parquet --via image,audio --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clip_items(df, split: str, clip_seconds: float, limit: int | None):
    """Rows of ``split`` with audio, image and a bar alignment whose bars last at least a clip."""
    from xmr.data.manifest import bar_alignment

    rows = []
    part = df[df["split"] == split] if split else df
    for _, row in part.sort_values("id").iterrows():
        if not (isinstance(row.get("audio"), str) and isinstance(row.get("image"), str)):
            continue
        bars = bar_alignment(row)
        if bars is None or bars["bar_ends"][-1] - bars["bar_onsets"][0] < clip_seconds:
            continue
        rows.append((row, bars))
    return rows[:limit] if limit else rows


def mean(values) -> float:
    """The mean of ``values``; NaN when there are none (no clips, or no hits)."""
    return float(np.mean(values)) if len(values) else float("nan")


def _span_candidates(model, candidates):
    """(V, D) unit vectors of every 2–4-bar run of each candidate's image and (V,) their
    candidate's row in ``candidates``."""
    from xmr.data.manifest import bar_alignment
    from xmr.index.ann import normalize
    from xmr.index.bars import BarLocator, candidate_spans

    locator = BarLocator(model, via="image", max_items=len(candidates) + 1)
    vectors, owner = [], []
    for n, (_, row) in enumerate(candidates.iterrows()):
        bars = bar_alignment(row)
        if bars is None:
            continue
        spans = candidate_spans(bars["bar_onsets"], bars["bar_ends"], None)
        vectors.append(locator.span_vectors(str(row["id"]), bars, spans, lambda row=row: row["image"]))
        owner += [n] * len(spans)
    return normalize(np.concatenate(vectors).astype(np.float32)), np.asarray(owner, dtype=np.int64)


def measure(model, df, *, split: str = "test", clip_seconds: float = 4.0, k: int = 10, seed: int = 0,
            vias=("audio",), limit: int | None = None, extra_bars: int = 1, span_candidates: bool = False,
            progress: bool = True, index: str | Path | None = None) -> dict:
    """The rates of the module docstring, as a dict (per clip records under ``"clips"``); ``index``:
    an index folder whose hubness offsets correct the image candidates' scores."""
    from xmr.index.ann import normalize
    from xmr.index.bars import BarLocator, bars_in, candidate_spans
    from xmr.index.query import encode_query
    from xmr.media.audio import load_audio

    candidates = df[(df["split"] == split) & df["image"].notna()].sort_values("id").reset_index(drop=True)
    t = time.perf_counter()
    cand_vectors = normalize(model.encode("image", list(candidates["image"])))
    embed_s = time.perf_counter() - t
    cand_ids = list(candidates["id"].astype(str))
    shift = np.zeros(len(cand_ids), np.float32)
    if index is not None:
        from xmr.index import IndexStore
        from xmr.index.hubness import bank_key

        store = IndexStore.load(index, fingerprint=model.fingerprint)
        shift = store.item_shift("image", cand_ids, bank_key("audio", clip_seconds))  # as the app ranks
    position = {i: n for n, i in enumerate(cand_ids)}
    items = clip_items(df, split, clip_seconds, limit)
    spans_of = _span_candidates(model, candidates) if span_candidates else None
    rng = np.random.default_rng(seed)
    sr = int(model.sample_rate)
    locators = {v: BarLocator(model, via=v, extra_bars=extra_bars) for v in vias}
    records = []
    locate_s = {v: 0.0 for v in vias}
    for n, (row, bars) in enumerate(items):
        wave = load_audio(row["audio"], sample_rate=sr, max_seconds=None)
        t_end = min(float(bars["bar_ends"][-1]), len(wave) / sr)
        t0 = float(rng.uniform(float(bars["bar_onsets"][0]), max(t_end - clip_seconds, 0.0)))
        clip = wave[int(round(t0 * sr)):int(round((t0 + clip_seconds) * sr))]
        query = encode_query(model, audio=clip)
        scores = cand_vectors @ query.vector - shift
        rank = int((scores > scores[position[str(row["id"])]]).sum()) + 1
        if spans_of is not None:  # every candidate's best vector: its whole image or a span
            span_vectors, owner = spans_of
            best = scores.copy()
            np.maximum.at(best, owner, span_vectors @ query.vector - shift[owner])
            span_rank = int((best > best[position[str(row["id"])]]).sum()) + 1
        true = bars_in(bars["bar_onsets"], bars["bar_ends"], t0, t0 + clip_seconds)
        rec = {"id": str(row["id"]), "t0": round(t0, 3), "rank": rank, "true": list(true),
               "n_bars": len(bars["bar_onsets"])}
        if spans_of is not None:
            rec["span_rank"] = span_rank
        spans = candidate_spans(bars["bar_onsets"], bars["bar_ends"], query.audio_seconds,
                                extra_bars=extra_bars)
        rec["chance"] = float(np.mean([a <= true[0] and true[1] <= b for a, b in spans]))
        for via, locator in locators.items():
            t = time.perf_counter()
            match = locator.locate(query.bar_query(), row, row[via])
            locate_s[via] += time.perf_counter() - t
            rec[via] = {"bars": [match.first, match.last], "contains": bool(match.contains(*true))}
        records.append(rec)
        if progress and (n + 1) % 25 == 0:
            print(f"  {n + 1}/{len(items)} clips", file=sys.stderr, flush=True)
    hits = [r for r in records if r["rank"] <= k]
    out = {"split": split, "clip_seconds": clip_seconds, "k": k, "seed": seed, "extra_bars": extra_bars,
           "hubness_index": None if index is None else str(index),
           "n_candidates": len(cand_ids), "n_clips": len(records), "n_hits": len(hits),
           "top_k_rate": len(hits) / max(len(records), 1),
           "chance_top_k": min(k / max(len(cand_ids), 1), 1.0),
           "mrr": mean([1.0 / r["rank"] for r in records]),
           "embed_candidates_s": embed_s, "via": {}, "clips": records}
    if spans_of is not None:
        out["span_candidates"] = {"vectors": int(len(spans_of[1])),
                                  "top_k_rate": mean([r["span_rank"] <= k for r in records]),
                                  "mrr": mean([1.0 / r["span_rank"] for r in records])}
    for via in vias:
        def rate(rs, via=via):
            return mean([r[via]["contains"] for r in rs])

        out["via"][via] = {
            "hit_rate_on_hits": rate(hits), "hit_rate_all_clips": rate(records),
            "chance_on_hits": mean([r["chance"] for r in hits]),
            "chance_all_clips": mean([r["chance"] for r in records]),
            "mean_highlighted_bars": mean([r[via]["bars"][1] - r[via]["bars"][0] + 1 for r in records]),
            "mean_true_bars": mean([r["true"][1] - r["true"][0] + 1 for r in records]),
            "mean_bars": mean([r["n_bars"] for r in records]),
            "locate_ms_per_clip_cold": 1000 * locate_s[via] / max(len(records), 1),
        }
    return out


def report(out: dict, checkpoint: str, manifest: str) -> str:
    lines = [f"# Clips and bars ({platform.machine()}, {os.cpu_count()} CPUs)", "",
             f"checkpoint `{checkpoint}`, manifest `{manifest}`; {out['split']} split, "
             f"{out['n_clips']} clips of {out['clip_seconds']:g} s (one per item, seed {out['seed']}), "
             f"spans of the clip's length + {out['extra_bars']} bar, "
             f"{out['n_candidates']} image candidates"
             + (f", scores corrected by the hubness offsets of `{out['hubness_index']}`"
                if out.get("hubness_index") else ""), "",
             "| measure | value | chance |", "|---|---:|---:|",
             f"| audio→image: item in the top {out['k']} | {out['top_k_rate']:.3f} ({out['n_hits']} clips) | "
             f"{out['chance_top_k']:.3f} |",
             f"| audio→image MRR | {out['mrr']:.3f} | |"]
    if "span_candidates" in out:
        sc = out["span_candidates"]
        lines += [f"| audio→image with 2–4-bar span candidates ({sc['vectors']} vectors): item in the top "
                  f"{out['k']} | {sc['top_k_rate']:.3f} | {out['chance_top_k']:.3f} |",
                  f"| audio→image MRR with span candidates | {sc['mrr']:.3f} | |"]
    for via, v in out["via"].items():
        lines += [f"| highlight (via the {via}) contains the true bars, clips in the top {out['k']} | "
                  f"{v['hit_rate_on_hits']:.3f} | {v['chance_on_hits']:.3f} |",
                  f"| highlight (via the {via}) contains the true bars, all clips | "
                  f"{v['hit_rate_all_clips']:.3f} | {v['chance_all_clips']:.3f} |",
                  f"| bars highlighted / true / in the item (mean; via the {via}) | "
                  f"{v['mean_highlighted_bars']:.2f} / {v['mean_true_bars']:.2f} / {v['mean_bars']:.2f} | |",
                  f"| bar matching per clip, nothing cached (via the {via}) | "
                  f"{v['locate_ms_per_clip_cold']:.0f} ms | |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled demo's)")
    parser.add_argument("--manifest", required=True, help="a manifest with bar columns (bar-aligned corpus)")
    parser.add_argument("--extra-bars", type=int, default=1, help="bars added to the shortest span that "
                        "lasts as long as the clip (default 1, as the app)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--via", default="audio,image", help="comma-separated: audio (as the app), image")
    parser.add_argument("--limit", type=int, default=None, help="at most this many clips")
    parser.add_argument("--span-candidates", action="store_true", help="also rank with every 2-4-bar run "
                        "of each candidate's image as a further vector of it")
    parser.add_argument("--index", default=None, help="an index folder built by the checkpoint: correct the "
                        "image candidates' scores by its hubness offsets, as its search does")
    parser.add_argument("--json", default=None, help="also write the numbers and per-clip records here")
    args = parser.parse_args(argv)

    import xmr
    from xmr import paths
    from xmr.data.manifest import read_manifest

    checkpoint = args.checkpoint or str(paths.demo_checkpoint())
    model = xmr.load_model(checkpoint)
    df = read_manifest(args.manifest)
    out = measure(model, df, split=args.split, clip_seconds=args.clip_seconds, k=args.k, seed=args.seed,
                  vias=tuple(v.strip() for v in args.via.split(",") if v.strip()), limit=args.limit,
                  extra_bars=args.extra_bars, span_candidates=args.span_candidates, index=args.index)
    print(report(out, checkpoint, args.manifest))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
