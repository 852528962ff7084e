"""`progresslm report DIR...`: several runs side by side, as Markdown (stdout or file) and HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="put several eval runs side by side")
    parser.add_argument("runs", nargs="+", metavar="DIR", help="folders written by `progresslm eval --out DIR`")
    parser.add_argument("--md", help="also write the Markdown table to this file")
    parser.add_argument("--html", help="also write an HTML page to this file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from progresslm import report

    try:
        runs = [report.load_run(Path(path)) for path in args.runs]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    markdown = report.compare_markdown(runs)
    print(markdown)
    if args.md:
        Path(args.md).write_text(markdown)
    if args.html:
        Path(args.html).write_text(report.compare_html(runs))
    return 0
