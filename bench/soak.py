"""Soak test: a few hundred mixed queries through the real app, its RSS printed at intervals.

Launches ``python app.py`` (the demo named by ``XMR_*``, default the bundled one) on a free
127.0.0.1 port with a throw-away label database and sends ``--queries`` searches in a fixed,
seeded mix: texts, audio clips (uploads cut from different test items at different lengths),
images (the items' own score images), text + image fusions, and "use as query" on a result; each
followed by the page's card step, and every ``--media-every`` queries by its image and audio steps
(which render the results' media the first time: slow, and a collection of 10,000 items rarely
repeats a result). The RSS of the app's process tree is printed
every ``--every`` queries; the verdict compares the RSS after all queries with the RSS after the
first ``--baseline`` (goal: within 5 %).

Usage::

    python bench/soak.py --queries 300 --every 25
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from _serve import App

WORDS = [
    "slow",
    "lively",
    "chorale",
    "organ",
    "fiddle",
    "reel",
    "waltz",
    "piano",
    "hymn",
    "choir",
    "jig",
    "flute",
    "minor",
    "major",
    "strings",
    "gentle",
    "march",
    "brass",
    "lullaby",
    "fugue",
    "dance",
    "sad",
]


def clips(manifest: Path, tmp: Path, n: int, rng: random.Random) -> tuple[list[Path], list[Path]]:
    """``n`` audio uploads (WAV, 2-20 s cut from test items) and ``n`` image uploads (their score images)."""
    import soundfile as sf

    from xmr import paths
    from xmr.data.files import media_file
    from xmr.data.manifest import read_manifest
    from xmr.media.audio import load_audio

    df = read_manifest(manifest)
    if "split" in df.columns and (df["split"] == "test").any():
        df = df[df["split"] == "test"]
    rows = df.sort_values("id").to_dict("records")
    rng.shuffle(rows)
    audio, images = [], []
    for i, row in enumerate(rows[:n]):
        wave = load_audio(
            str(media_file(row, "audio", manifest_dir=manifest.parent, cache_dir=paths.cache_dir())),
            sample_rate=16000,
        )
        seconds = rng.uniform(2.0, 20.0)
        out = tmp / f"clip{i:03d}.wav"
        sf.write(out, wave[: int(seconds * 16000)], 16000)
        audio.append(out)
        images.append(
            Path(media_file(row, "image", manifest_dir=manifest.parent, cache_dir=paths.cache_dir()))
        )
    return audio, images


def search(client, *, audio=None, image=None, text: str = "", w_image: float = 1.0, targets, k: int):
    """One ``/search`` call of the page (audio, image, text, their weights, targets, k); its results."""
    from gradio_client import handle_file

    results, _ = client.predict(
        None if audio is None else handle_file(str(audio)),
        None if image is None else handle_file(str(image)),
        text, 1.0, w_image, 1.0, targets, k, api_name="/search",
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="print the RSS every this many queries")
    parser.add_argument(
        "--baseline", type=int, default=50, help="the RSS after this many queries is the base"
    )
    parser.add_argument("--distinct", type=int, default=40, help="distinct audio clips and images to upload")
    parser.add_argument("--media-every", type=int, default=10, help="image and audio steps every N queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from gradio_client import Client

    from xmr import paths

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="xmr-soak-"))
    manifest = Path(os.environ.get("XMR_MANIFEST", paths.demo_manifest()))
    audio, images = clips(manifest, tmp, args.distinct, rng)
    app = App({"XMR_LABELS_DB": str(tmp / "labels.sqlite")}, tmp / "app.log")
    client = Client(app.url, verbose=False)
    rss = [(0, round(app.rss_mib()))]
    print(f"ready in {app.ready_s:.1f} s; RSS {rss[0][1]} MiB", flush=True)
    kinds = ["text", "audio", "image", "text+image", "use"]
    counts = dict.fromkeys(kinds, 0)
    last: list = []
    t0 = time.perf_counter()
    try:
        for i in range(1, args.queries + 1):
            kind = rng.choice(kinds if last else kinds[:4])
            text = " ".join(rng.sample(WORDS, rng.randint(2, 6)))
            targets = rng.choice([["audio", "image"], ["audio"], ["image"], ["audio", "image", "text"]])
            k = rng.choice([5, 8, 10])
            if kind == "use":
                hit = rng.choice(last)
                client.predict(hit["item_id"], rng.choice(["audio", "image", "text"]), api_name="/use_item")
            if kind in ("text", "use"):
                results = search(client, text=text, targets=targets, k=k)
            elif kind == "audio":
                results = search(client, audio=rng.choice(audio), targets=targets, k=k)
            elif kind == "image":
                results = search(client, image=rng.choice(images), targets=targets, k=k)
            else:
                results = search(client, image=rng.choice(images), text=text, w_image=0.5,
                                 targets=targets, k=k)
            counts[kind] += 1
            last = results or last
            client.predict(results, api_name="/show_results")
            if i % args.media_every == 0:
                for api in ("/result_images", "/result_audio"):
                    client.predict(results, api_name=api)
            if i % args.every == 0 or i == args.baseline:
                rss.append((i, round(app.rss_mib())))
                print(f"{i:4d} queries  {time.perf_counter() - t0:6.0f} s  RSS {rss[-1][1]} MiB", flush=True)
    finally:
        app.stop()
    base = dict(rss).get(args.baseline)
    end = rss[-1][1]
    report = {
        "media_every": args.media_every,
        "queries": args.queries,
        "mix": counts,
        "rss_mib": rss,
        "rss_base_mib": base,
        "rss_end_mib": end,
        "growth_pct": round(100 * (end - base) / base, 1) if base else None,
        "peak_mib": max(v for _, v in rss),
    }
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if base and abs(end - base) <= 0.05 * base else 1


if __name__ == "__main__":
    sys.exit(main())
