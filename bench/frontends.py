"""CPU speed of the pitch-keeping audio front ends (``SpectrogramConfig`` kinds ``logfreq`` and
``cqt``) next to the 64-bin log-mel, on one thread: milliseconds per 10 s clip, best of a few runs.

    python bench/frontends.py [--clips 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from xmr.media.features import SpectrogramConfig, compute_features

SR = 16000
PITCH = dict(sample_rate=SR, n_fft=4096, win_length=4096, hop_length=320, f_min=30.0, f_max=6000.0,
             bins_per_octave=16)
CONFIGS = {
    "logmel (64 bins, hop 320)": SpectrogramConfig(sample_rate=SR, kind="logmel", n_fft=1024, win_length=1024,
                                                   hop_length=320, n_mels=64),
    "logfreq (16/oct, 30 Hz-6 kHz, hop 320)": SpectrogramConfig(kind="logfreq", **PITCH),
    "cqt (16/oct, 30 Hz-6 kHz, hop 320)": SpectrogramConfig(kind="cqt", **PITCH),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    waves = torch.randn(args.clips, 10 * SR) * 0.1
    print("| front end | bins | frames per 10 s | ms per 10 s clip |")
    print("|---|---:|---:|---:|")
    for name, cfg in CONFIGS.items():
        out = compute_features(waves[:1], cfg)  # builds and caches the transform
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            compute_features(waves, cfg)
            best = min(best, time.perf_counter() - t0)
        print(f"| {name} | {out.shape[2]} | {out.shape[3]} | {1000 * best / args.clips:.1f} |")


if __name__ == "__main__":
    main()
