"""Benchmark of the app on the demo named by ``XMR_*`` (default: the bundled demo).

Launches ``python app.py`` as a subprocess on a free localhost port, exactly as a Space does, and
measures:

- start-up: seconds from process start until the app answers (``/config``), i.e. ready to serve,
  and the CPU seconds the app used until then (start-up is mostly single-threaded imports and
  loading, so on a busy machine the CPU time is the better estimate of an idle start);
- memory: resident set size (RSS) of the app's process tree after load, and again after the queries;
- latency, end to end through ``gradio_client`` (HTTP + queue + upload + encode + search), median
  and 90th percentile of repeated runs: a text query, and an audio query of ``--audio-seconds``
  (30 s by default; a clip made by concatenating the collection's test audio, so it is real
  music for the demo corpus);
- the follow-up steps of the page: drawing the result cards (score images, rendered on demand and
  cached: the first call is cold) and loading their audio; for the audio query, matching each
  result's bars (via its audio, rendered on demand the first time) and drawing them on its score.

Goals (on a 2-vCPU Space): ready ≤ 30 s, RSS ≤ 2 GB, text ≤ 0.3 s, 30 s audio ≤ 1 s.

Usage::

    python bench/app.py                       # the bundled demo
    XMR_CHECKPOINT=... XMR_INDEX=... XMR_MANIFEST=... python bench/app.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a slow chorale for organ in a minor key", "a lively reel on fiddle in D major",
         "a waltz for piano in three-four time", "a hymn for choir in four voices",
         "a jig for flute in G major", "a gentle song for strings in F major"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines()
                          if line.startswith("VmRSS"))
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
        except (OSError, StopIteration):
            continue
    return total


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def _long_clip(manifest: Path, seconds: float, out: Path, sample_rate: int = 16000) -> Path:
    """A ``seconds``-long WAV made of the collection's test-split audio (rendered on demand)."""
    import numpy as np
    import soundfile as sf

    from xmr import paths
    from xmr.data.files import media_file
    from xmr.data.manifest import read_manifest
    from xmr.media.audio import load_audio

    df = read_manifest(manifest)
    if "split" in df.columns and (df["split"] == "test").any():
        df = df[df["split"] == "test"]
    pieces, total = [], 0
    for row in df.sort_values("id").to_dict("records"):
        if total >= seconds * sample_rate:
            break
        path = media_file(row, "audio", manifest_dir=manifest.parent, cache_dir=paths.cache_dir())
        wave = load_audio(str(path), sample_rate=sample_rate)
        pieces.append(wave)
        total += len(wave)
    if not pieces:
        raise SystemExit("the collection has no audio to make a long query from")
    clip = np.concatenate(pieces)
    while len(clip) < seconds * sample_rate:  # a tiny collection: repeat it
        clip = np.concatenate([clip, clip])
    sf.write(out, clip[: int(seconds * sample_rate)], sample_rate)
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return statistics.median(values), p90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs per query kind (median reported)")
    parser.add_argument("--audio-seconds", type=float, default=30.0, help="length of the audio query")
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the app")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    from xmr import paths

    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    tmp = Path(tempfile.mkdtemp(prefix="xmr-bench-app-"))
    env.setdefault("XMR_LABELS_DB", str(tmp / "labels.sqlite"))  # never write into the real label DB
    log = open(tmp / "app.log", "w")  # noqa: SIM115 - closed at the end
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        ready = None
        while time.perf_counter() - t0 < args.timeout:
            if proc.poll() is not None:
                raise SystemExit(f"the app exited:\n{(tmp / 'app.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "config", timeout=2) as r:
                    if r.status == 200:
                        ready = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.1)
        if ready is None:
            raise SystemExit(f"the app was not ready within {args.timeout} s")
        rss_load = _tree_rss_bytes(proc.pid)
        cpu_ready = _tree_cpu_seconds(proc.pid)
        load = os.getloadavg()[0]
        client = Client(url, verbose=False)
        targets = ["audio", "image"]

        def text_query(i: int):
            return client.predict(None, None, TEXTS[i % len(TEXTS)], 1.0, 1.0, 1.0, targets, args.k,
                                  api_name="/search")

        clip = _long_clip(Path(os.environ.get("XMR_MANIFEST", paths.demo_manifest())), args.audio_seconds,
                          tmp / "query.wav")

        def audio_query(_: int):
            return client.predict(handle_file(str(clip)), None, "", 1.0, 1.0, 1.0, targets, args.k,
                                  api_name="/search")

        # one warm-up call of each (first-call allocations, lazy imports), not counted
        text_query(0)
        audio_query(0)
        timings: dict[str, list[float]] = {"text": [], "audio": []}
        for i in range(args.repeats):
            for name, fn in (("text", text_query), ("audio", audio_query)):
                t = time.perf_counter()
                results, _ = fn(i + 1)
                timings[name].append(time.perf_counter() - t)
                assert len(results) == args.k, results
        # the page's follow-up steps on the last text query's results: the cards (text at once), their
        # score images (rendered on demand the first time, then cached), their audio
        results, _ = text_query(args.repeats + 7)
        steps = {}
        for name, api in (("cards", "/show_results"), ("images", "/result_images"),
                          ("images again", "/result_images"), ("audio", "/result_audio"),
                          ("audio again", "/result_audio")):
            t = time.perf_counter()
            client.predict(results, api_name=api)
            steps[name] = time.perf_counter() - t
        # an audio query's bars (xmr.index.bars, via each result's audio: rendered on demand the
        # first time, then its span vectors kept), then its highlighted score images
        results, _ = audio_query(0)
        for name, api in (("bars", "/result_bars"), ("bars again", "/result_bars")):
            t = time.perf_counter()
            located = client.predict(results, api_name=api)[0]
            steps[name] = time.perf_counter() - t
        assert any(h.get("bars") for h in located), "an audio query's results got no bars"
        t = time.perf_counter()
        client.predict(located, api_name="/result_images")
        steps["highlighted images"] = time.perf_counter() - t
        rss_after = _tree_rss_bytes(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    t_med, t_p90 = _stats(timings["text"])
    a_med, a_p90 = _stats(timings["audio"])
    print(f"# App benchmark ({platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()})\n")
    print(f"demo: checkpoint `{paths.demo_checkpoint()}`, index `{paths.demo_index()}`, "
          f"manifest `{paths.demo_manifest()}`; k = {args.k}, targets audio+image, {args.repeats} runs\n")
    print("| measure | value | goal |")
    print("|---|---:|---:|")
    print(f"| start-up to ready (wall; 1-min load average {load:.1f} on {os.cpu_count()} CPUs) | "
          f"{ready:.1f} s | ≤ 30 s |")
    print(f"| CPU time of the app until ready (≈ wall time on an idle machine) | {cpu_ready:.1f} s | |")
    print(f"| RSS after load | {rss_load / 2**20:.0f} MiB | ≤ 2048 MiB |")
    print(f"| RSS after the queries | {rss_after / 2**20:.0f} MiB | ≤ 2048 MiB |")
    print(f"| text query, end to end (median / p90) | {t_med * 1000:.0f} / {t_p90 * 1000:.0f} ms "
          "| ≤ 300 ms |")
    print(f"| {args.audio_seconds:g} s audio query, end to end incl. upload (median / p90) | "
          f"{a_med * 1000:.0f} / {a_p90 * 1000:.0f} ms | ≤ 1000 ms |")
    print(f"| result cards (captions, scores; pictures already on disk) | {steps['cards'] * 1000:.0f} ms | |")
    print(f"| {args.k} score images, first time (rendered on demand unless on disk) | "
          f"{steps['images'] * 1000:.0f} ms | |")
    print(f"| {args.k} score images again (cached) | {steps['images again'] * 1000:.0f} ms | |")
    print(f"| {args.k} audio clips, first time (rendered on demand unless on disk) | "
          f"{steps['audio'] * 1000:.0f} ms | |")
    print(f"| {args.k} audio clips again (cached) | {steps['audio again'] * 1000:.0f} ms | |")
    print(f"| bars of an audio query's {args.k} results, first time (their audio rendered unless on disk) | "
          f"{steps['bars'] * 1000:.0f} ms | |")
    print(f"| the same bars again (span vectors kept) | {steps['bars again'] * 1000:.0f} ms | |")
    print(f"| {args.k} score images with those bars highlighted | "
          f"{steps['highlighted images'] * 1000:.0f} ms | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
