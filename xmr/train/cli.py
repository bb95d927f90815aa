"""``xmr train``: train a model from a YAML config (also under ``torchrun`` for several processes)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train encoders from a config (single process, or under torchrun for DDP)",
        description="Train a model by a YAML config. Several processes: "
                    "torchrun --nproc_per_node N -m xmr train --config FILE --out DIR",
    )
    p.add_argument("--config", required=True, help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--out", required=True,
                   help="run folder: state.pt, log.jsonl, tb/, checkpoint/, report.json")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args) -> int:
    import os

    from xmr.train import dist
    from xmr.train.config import load_config
    from xmr.train.loop import train

    cfg = load_config(args.config, args.overrides)
    try:
        report = train(cfg, out_dir=args.out, resume=args.resume, stop_after=args.stop_after)
    finally:
        dist.cleanup()
    if report.get("interrupted"):
        print(f"stopped at step {report['step']}; continue with --resume")
    elif int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {report['steps']} steps in {report['wall_seconds']} s -> {args.out}/checkpoint")
    return 0
