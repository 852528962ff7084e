"""`progresslm` entry point. Subcommand modules import heavy libraries only when they run,
so `progresslm --help` and `progresslm bench stats` never import torch."""

from __future__ import annotations

import argparse
import logging
import sys

from progresslm import __version__
from progresslm.cli import bench, evaluate, report, serve, sim, train, watch

COMMANDS = (bench, sim, evaluate, report, train, watch, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="progresslm",
        description="Progress reasoning for vision-language models: benchmarks, evaluation, training.",
    )
    parser.add_argument("--version", action="version", version=f"progresslm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
