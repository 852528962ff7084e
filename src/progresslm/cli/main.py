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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (not the one at set-up), so a redirected or
    captured stderr gets the package's messages."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """The package's own logger only: INFO (DEBUG with -v, ERROR with --quiet) to stderr. Third-party loggers
    (httpx writes a line per HTTP request at INFO, PyOpenGL, uvicorn's access log) stay at WARNING."""
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    package = logging.getLogger("progresslm")
    package.setLevel(level)
    if not any(getattr(h, "_progresslm", False) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._progresslm = True
        package.addHandler(handler)
        package.propagate = False
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "OpenGL", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, quiet=getattr(args, "quiet", False))
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
