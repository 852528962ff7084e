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
    example.add_argument("--seed", type=int, default=0, help="seed of the drawn scenes")
    example.set_defaults(handler=run_example)
    calibrate = commands.add_parser(
        "calibrate-retrieval",
        help="choose the retrieval baseline's N/A threshold on a training split",
        description="Best cosine similarity between observation and keyframes, on the visual samples of a "
        "training split: the threshold that best separates answerable from unanswerable samples is written "
        "to a JSON file, which `progresslm eval --backend retrieval --model FILE` reads.",
    )
    calibrate.add_argument("--bench", nargs="+", required=True, metavar="FILE", help="training-split JSONL files")
    calibrate.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name>")
    calibrate.add_argument("--out", required=True, metavar="FILE", help="calibration JSON to write")
    calibrate.add_argument("--max-afrr", type=float, help="refuse at most this share (0-1) of answerable samples")
    calibrate.set_defaults(handler=run_calibrate)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_stats(args: argparse.Namespace) -> int:
    from progresslm.bench.format import BenchFormatError, load_bench
    from progresslm.bench.stats import bench_stats, format_stats

    try:
        bench = load_bench(args.files)
    except BenchFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stats = bench_stats(bench, args.image_root)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from progresslm.backends.retrieval import calibrate_threshold
    from progresslm.bench.format import BenchFormatError, load_bench

    try:
        samples = load_bench(args.bench).samples
        calibration = calibrate_threshold(
            samples, args.image_root, args.out, made_from=" ".join(args.bench), max_afrr=args.max_afrr
        )
    except (BenchFormatError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"threshold {calibration.threshold:.4f} (balanced accuracy {calibration.balanced_accuracy:.3f}, "
          f"{calibration.n}); written to {args.out}")
    return 0


def run_example(args: argparse.Namespace) -> int:
    from progresslm.bench.example import build_example, default_example_dir

    out = build_example(args.out or default_example_dir(), seed=args.seed)
    print(f"example benchmark in {out.root}")
    for path in out.files:
        print(f"  {path}")
    return 0
