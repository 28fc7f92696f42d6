"""The ``tqjax`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import os
import sys


def _commands():
    from tqjax.cli import convert
    commands = [convert]
    for name in ("decode", "eval", "train", "batch", "plan", "sentiment"):
        try:
            commands.append(__import__(f"tqjax.cli.{name}", fromlist=[name]))
        except ModuleNotFoundError as e:
            if e.name != f"tqjax.cli.{name}":
                raise
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tqjax", description="Transfer Q* decoding-time alignment in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _commands():
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:        # a bad flag (argparse printed it, exit status 2) or --help
        return e.code
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"tqjax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
