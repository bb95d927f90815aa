"""``xmr train``: train a model from a YAML config (also under ``torchrun`` for several processes).

``xmr part-head``: a trained checkpoint with a head of its own for short audio clips
(:mod:`xmr.train.part_head`), every other weight unchanged.
"""

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
    part = subparsers.add_parser(
        "part-head", help="fit a head for short audio clips on a trained checkpoint",
        description="Fit a projection head of the checkpoint's own audio tower for clips of a few "
                    "seconds against its fixed embeddings of the whole training items' scores; the "
                    "towers and the other heads stay as they are, so an index of the checkpoint "
                    "keeps its vectors. The result is a checkpoint with the part head (another "
                    "fingerprint: embed and index with it again).",
    )
    part.add_argument("--checkpoint", required=True, help="the trained checkpoint folder")
    part.add_argument("--manifest", required=True, help="the corpus manifest (its train split)")
    part.add_argument("--out", required=True, help="checkpoint folder to write")
    part.add_argument("--cache", default=None, help="folder for the clips' features (reused by a second fit)")
    part.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="a PartHeadConfig value, e.g. --set steps=2000 (repeatable)")
    part.set_defaults(func=_part_head)


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


def _part_head(args) -> int:
    from xmr.models.checkpoint import read_checkpoint_config
    from xmr.train.part_head import PartHeadConfig, fit_checkpoint

    cfg = PartHeadConfig.from_overrides(args.overrides)
    out, _ = fit_checkpoint(args.checkpoint, args.manifest, args.out, cfg, cache=args.cache)
    print(f"wrote {out} (fingerprint {read_checkpoint_config(out)['fingerprint'][:12]})")
    return 0
