"""Per-item CPU cost of the real-input augmentation (xmr.media.augment), one transform at a time
and the presets, on one thread.

    nice -n 5 python bench/augment.py [--items 20] [--seconds 8] [--image-size 80 160]

Audio is an 8 s clip at 16 kHz of a rendered-like mix (tones with an envelope plus a little noise),
images a score-like page (staff lines and note heads) at the model's size. Each row is the median
milliseconds per item over ``--items`` calls (different keys) after two warm-up calls; the preset
rows apply each transform with its configured probability, and give the mean over more calls: the
expected cost per training item.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _clip(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2
    wave = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (196.0, 293.7, 440.0, 659.3)) * env
    return (wave + 0.01 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def _score(h: int, w: int):
    import torch

    img = torch.ones(1, h, w)
    gap = max(2, h // 16)
    top = h // 2 - 2 * gap
    for k in range(5):
        img[:, top + gap * k, 4:-4] = 0.0
    for x in range(12, w - 12, max(6, w // 12)):
        img[:, top + gap:top + 2 * gap, x:x + gap + 1] = 0.0
    return img


def _time(fn, n: int, *, mean: bool = False) -> float:
    import torch

    for k in range(2):
        fn(torch.Generator().manual_seed(10_000 + k))
    times = []
    for k in range(n):
        gen = torch.Generator().manual_seed(k)
        t0 = time.perf_counter()
        fn(gen)
        times.append(time.perf_counter() - t0)
    return 1000.0 * (statistics.fmean(times) if mean else statistics.median(times))


def main() -> None:
    import torch

    from xmr.media.augment import AudioAugmentConfig, ImageAugmentConfig, build_augment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--image-size", type=int, nargs=2, default=[80, 160])
    args = parser.parse_args()
    torch.set_num_threads(1)
    sr = args.sample_rate
    wave = _clip(args.seconds, sr)
    img = _score(*args.image_size)
    audio_p = [f for f in AudioAugmentConfig.__dataclass_fields__ if f.startswith("p_")]
    image_p = [f for f in ImageAugmentConfig.__dataclass_fields__ if f.startswith("p_")]
    rows = []
    codecs = [(" (mp3)", {"codecs": ["mp3"]}), (" (gsm)", {"codecs": ["gsm"]})]
    for p in audio_p:
        for suffix, more in codecs if p == "p_codec" else [("", {})]:
            aug = build_augment({"name": "audio", "audio": {**{q: 0.0 for q in audio_p}, p: 1.0, **more}})
            ms = _time(lambda g, a=aug: a.audio(wave, sr, gen=g), args.items)
            rows.append(("audio", p[2:] + suffix, ms))
    for p in image_p:
        aug = build_augment({"name": "image", "image": {**{q: 0.0 for q in image_p}, p: 1.0}})
        rows.append(("image", p[2:], _time(lambda g, a=aug: a.image(img, gen=g), args.items)))
    every = build_augment({"name": "real", "audio": {q: 1.0 for q in audio_p},
                           "image": {q: 1.0 for q in image_p}})
    real = build_augment("real")
    n = 4 * args.items  # the preset draws which transforms run: the mean over more calls
    rows.append(("audio", "all transforms", _time(lambda g: every.audio(wave, sr, gen=g), args.items)))
    ms = _time(lambda g: real.audio(wave, sr, gen=g), n, mean=True)
    rows.append(("audio", "preset `real` (mean per item)", ms))
    rows.append(("image", "all transforms", _time(lambda g: every.image(img, gen=g), args.items)))
    ms = _time(lambda g: real.image(img, gen=g), n, mean=True)
    rows.append(("image", "preset `real` (mean per item)", ms))
    print(f"Per-item cost, median of {args.items} items (presets: mean of {n}), 1 thread; audio "
          f"{args.seconds:g} s at {sr} Hz, image {args.image_size[0]}x{args.image_size[1]}")
    print()
    print("| modality | transform | ms / item |")
    print("|---|---|---:|")
    for modality, name, ms in rows:
        print(f"| {modality} | {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
