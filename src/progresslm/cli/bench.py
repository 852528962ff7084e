"""`progresslm bench stats|example`: describe a benchmark, or build the small example one."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="describe or build benchmarks")
    commands = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")

    stats = commands.add_parser("stats", help="samples, trajectories, demo lengths, defects, missing images")
    stats.add_argument("files", nargs="+", metavar="FILE", help="benchmark JSONL files (the authors' format)")
    stats.add_argument("--image-root", help="check that every image exists under IMAGE_ROOT/<id>/<file name>")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.set_defaults(handler=run_stats)

    example = commands.add_parser("example", help="build the small synthetic example benchmark")
    example.add_argument("--out", help="folder to write (default: the data folder's example-v1)")
    example.add_argument("--seed", type=int, default=0)
    example.set_defaults(handler=run_example)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_stats(args: argparse.Namespace) -> int:
    from progresslm.bench.stats import bench_stats, format_stats
    from progresslm.official import BenchFormatError, load_bench

    try:
        bench = load_bench(args.files)
    except BenchFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stats = bench_stats(bench, args.image_root)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_example(args: argparse.Namespace) -> int:
    from progresslm.bench.example import build_example, default_example_dir

    out = build_example(args.out or default_example_dir(), seed=args.seed)
    print(f"example benchmark in {out.root}")
    for path in out.files:
        print(f"  {path}")
    return 0
