"""Training throughput (samples/s) with plain InfoNCE and with SCFEM, in one run (the claim of
Nakatsuka et al. 2023 that the memory adds little per step).

    python bench/train_throughput.py --config configs/demo.yaml --manifest data/corpus/manifest.parquet

Both losses train the same model config on the same batches; the table gives samples/s of the
timed steps (after warm-up steps) and the SCFEM / InfoNCE ratio. SCFEM's memory terms are switched
on from the first step (warm-up 0), and the memory is E = 2 epochs of N x D per modality.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time


def measure(config: str, overrides: list[str], *, steps: int, warmup: int) -> dict[str, float]:
    import torch

    from xmr.train.config import load_config
    from xmr.train.loop import Trainer

    out = tempfile.mkdtemp(prefix="xmr-bench-")
    try:
        cfg = load_config(config, overrides + ["train.eval_every=0", "train.progress=false",
                                               "train.tensorboard=false"])
        trainer = Trainer(cfg, out_dir=out)
        for _ in range(warmup):
            trainer.train_step(trainer.sampler.next_batch()[0])
            trainer.step += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(trainer.sampler.next_batch()[0])
            trainer.step += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return {"samples_per_s": steps * cfg.data.batch_size / seconds, "s_per_step": seconds / steps,
                "device": str(trainer.device), "batch": cfg.data.batch_size}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def loss_only(*, n_items: int, batch: int, dim: int, iters: int) -> dict[str, float]:
    """ms per forward+backward of the loss alone on fixed embeddings (the only part that differs)."""
    import torch

    from xmr.train.losses import build_loss

    torch.manual_seed(0)
    out = {}
    for name, extra in (("infonce", {}), ("scfem", {"memory": "scfem", "warmup_steps": 0})):
        loss_fn = build_loss({"kind": "infonce", "num_items": n_items, "embed_dim": dim, **extra})
        emb = {m: torch.nn.functional.normalize(torch.randn(batch, dim), dim=1).requires_grad_(True)
               for m in ("audio", "image", "text")}
        present = {m: torch.ones(batch, dtype=torch.bool) for m in emb}
        times = []
        for it in range(iters):
            ids = torch.randperm(n_items)[:batch]
            t0 = time.perf_counter()
            loss, _ = loss_fn(emb, present, ids, None, it, None)
            loss.backward()
            times.append(time.perf_counter() - t0)
            if (it + 1) % max(1, n_items // batch) == 0:
                loss_fn.on_epoch_end()
        times.sort()
        out[name] = 1000 * times[len(times) // 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two losses this many times")
    parser.add_argument("--loss-items", type=int, default=10000, help="N of the loss-only measurement")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    base = list(args.overrides) + ([f"data.manifest={args.manifest}"] if args.manifest else [])
    variants = {
        "infonce": base + ["loss.memory=none"],
        "scfem": base + ["loss.memory=scfem", "loss.warmup_steps=0", "loss.memory_epochs=2"],
    }
    runs: dict[str, list[float]] = {k: [] for k in variants}
    info = {}
    for _ in range(args.repeats):  # alternate so that a change in machine load hits both alike
        for name, overrides in variants.items():
            r = measure(args.config, overrides, steps=args.steps, warmup=args.warmup)
            runs[name].append(r["samples_per_s"])
            info = r
    best = {k: max(v) for k, v in runs.items()}
    print(f"device: {info['device']}, global batch {info['batch']}, {args.steps} timed steps, "
          f"best of {args.repeats}")
    print(f"{'loss':<10} {'samples/s':>10} {'runs':>24}")
    for k, v in runs.items():
        print(f"{k:<10} {best[k]:>10.1f} {', '.join(f'{x:.1f}' for x in v):>24}")
    print(f"SCFEM / InfoNCE throughput ratio: {best['scfem'] / best['infonce']:.3f}")
    lo = loss_only(n_items=args.loss_items, batch=info["batch"], dim=256, iters=100)
    print(f"loss alone (median ms per forward+backward, B={info['batch']}, N={args.loss_items}, D=256, "
          f"3 modalities): InfoNCE {lo['infonce']:.2f}, SCFEM {lo['scfem']:.2f}")


if __name__ == "__main__":
    main()
