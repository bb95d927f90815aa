"""``xmr checkpoint init``: a checkpoint of pretrained towers that already share a space, no training."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    ckpt = subparsers.add_parser("checkpoint", help="make a checkpoint from pretrained towers (zero-shot)")
    sub = ckpt.add_subparsers(dest="checkpoint_command", metavar="COMMAND")
    init = sub.add_parser(
        "init", help="save an untrained checkpoint of a registered hub model (e.g. clap-zeroshot)",
        description="Build a registered model from its pretrained towers and save it as a checkpoint, "
                    "recording which modality pairs share a space (CLAP audio+text, CLIP/SigLIP "
                    "image+text) and which are untrained (shown as such in the app's Evaluate tab).",
    )
    init.add_argument("--model", required=True, help="registered model name (xmr.models.list_models())")
    init.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a model config value, e.g. --set audio.backbone=PATH (repeatable)")
    init.add_argument("--out", required=True, help="checkpoint folder to write")
    init.set_defaults(func=_init)
    ckpt.set_defaults(func=lambda args: (ckpt.print_help(), 2)[1])


def _init(args: argparse.Namespace) -> int:
    import yaml

    from xmr.errors import InputError
    from xmr.models.registry import get_model_config
    from xmr.models.zero_shot import make_zero_shot_checkpoint

    overrides = {}
    for text in args.overrides:
        if "=" not in text:
            raise InputError(f"--set expects key=value, got {text!r}")
        key, value = text.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    cfg = get_model_config(args.model, **overrides)
    out = make_zero_shot_checkpoint(cfg, args.out)
    from xmr.models.checkpoint import read_checkpoint_config

    zero = read_checkpoint_config(out)["zero_shot"]
    shared = ", ".join("↔".join(p) for p in zero["shared"])
    untrained = ", ".join("↔".join(p) for p in zero["untrained"]) or "none"
    print(f"wrote {out} (shared space: {shared}; untrained: {untrained})")
    return 0
