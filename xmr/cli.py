"""The ``xmr`` command line: a thin table over the library's stage functions.

Each entry of :data:`COMMAND_MODULES` is a module with ``register(subparsers)`` that adds its
sub-commands and sets ``func`` to a function taking the parsed namespace. Those modules import
only argparse-level code at the top; heavy work is imported inside the command functions, so
``xmr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from xmr import __version__
from xmr.errors import XmrError

# One line per command group; a later feature adds its module here.
COMMAND_MODULES: list[str] = [
    "xmr.labels.cli",
    "xmr.data.cli",
    "xmr.models.cli",
    "xmr.train.cli",
    "xmr.eval.cli",
    "xmr.index.cli",
    "xmr.app.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmr",
        description="Cross-modal retrieval of music audio, images and text.",
    )
    parser.add_argument("--version", action="version", version=f"xmr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (errors print one line, exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except XmrError as err:
        print(f"xmr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xmr: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
