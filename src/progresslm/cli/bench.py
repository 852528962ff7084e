"""`progresslm bench stats|example|calibrate-retrieval|export|fetch-official`: describe a benchmark, build the small
example one, export one as a Hugging Face dataset, or download the authors' release."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from progresslm.backends.retrieval import calibrate_threshold
from progresslm.bench.example import build_example, default_example_dir
from progresslm.bench.format import BenchFormatError, load_bench
from progresslm.bench.stats import bench_stats, format_stats
from progresslm.data.hf_datasets import HFDataError, export_hf, push_to_hub
from progresslm.data.release import fetch_official
from progresslm.io import data_home


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
    add_hf_parsers(commands)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_stats(args: argparse.Namespace) -> int:
    try:
        bench = load_bench(args.files)
    except BenchFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stats = bench_stats(bench, args.image_root)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
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
    out = build_example(args.out or default_example_dir(), seed=args.seed)
    print(f"example benchmark in {out.root}")
    for path in out.files:
        print(f"  {path}")
    return 0


def add_hf_parsers(commands) -> None:
    """`bench export` and `bench fetch-official` (progresslm.data.hf_datasets; docs/hf.md)."""
    export = commands.add_parser(
        "export",
        help="write a benchmark folder as a Hugging Face dataset (save_to_disk, parquet shards, dataset card)",
        description="One split per split folder (bench/, sft/, rl/; JSONL files at the top form --split), one table "
        "per split with a `kind` column (the file stem), the authors' fields kept and the images embedded. OUT holds "
        "arrow/ (save_to_disk), data/<split>-*.parquet and README.md with the Hub's YAML header, ready to upload. "
        "`progresslm eval --bench OUT` (or the Hub id) writes the JSONL files and images back and evaluates.",
        epilog="""examples:
  progresslm bench export ~/.cache/progresslm/sim-small-s0-v4 --format hf --out runs/sim-small-hf
  progresslm bench export data/ --image-root data/images --out runs/bench-hf --push me/progress-bench --private
  progresslm eval --bench runs/sim-small-hf --backend constant""",
    )
    export.add_argument("folder", metavar="DIR", help="benchmark folder: JSONL files and/or bench/ sft/ rl/ folders")
    export.add_argument("--format", choices=["hf"], default="hf", help="output format (Hugging Face datasets)")
    export.add_argument("--out", required=True, help="folder to write (refused when it holds files: see --overwrite)")
    export.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name> (default: DIR/images)")
    export.add_argument("--split", default="bench", help="split name of the JSONL files directly in DIR")
    export.add_argument("--license", default="other", help="license in the dataset card (a Hub license id)")
    export.add_argument("--allow-missing-images", action="store_true",
                        help="export rows whose images are missing, with null images (default: refuse)")
    export.add_argument("--overwrite", action="store_true", help="replace OUT when it already holds files")
    export.add_argument("--push", metavar="REPO_ID", help="then upload to this Hub dataset (DatasetDict.push_to_hub)")
    export.add_argument("--private", action="store_true", help="with --push: create the Hub dataset private")
    export.add_argument("--quiet", action="store_true", help="no progress bars")
    export.set_defaults(handler=run_export)

    fetch = commands.add_parser(
        "fetch-official",
        help="download the authors' release (Hub dataset Raymond-Qiancx/ProgressLM-Dataset) for `eval`",
        description="snapshot_download of the authors' release into OUT/release (resumable), its image archives "
        "unpacked into OUT/images; prints the `progresslm eval` command for the benchmark files it finds.",
        epilog="""examples:
  progresslm bench fetch-official                          # ~/.cache/progresslm/official
  progresslm bench fetch-official --out data/official --include '*bench*' --include 'images/*'""",
    )
    fetch.add_argument("--out", help="folder to write (default: the data folder's official/)")
    fetch.add_argument("--revision", help="branch, tag or commit of the Hub dataset (default: main)")
    fetch.add_argument("--include", action="append", metavar="PATTERN",
                       help="download only files matching this glob (repeatable; default: everything)")
    fetch.set_defaults(handler=run_fetch_official)


def run_export(args: argparse.Namespace) -> int:
    try:
        result = export_hf(args.folder, args.out, image_root=args.image_root, split=args.split,
                           allow_missing=args.allow_missing_images, license=args.license, overwrite=args.overwrite,
                           progress=not args.quiet)  # fmt: skip
    except (HFDataError, BenchFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, kinds in result.rows.items():
        print(f"{split}: {sum(kinds.values())} rows ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
    if result.missing_images:
        print(f"warning: {result.missing_images} images were missing and are null", file=sys.stderr)
    print(f"written to {result.out} (arrow/, data/*.parquet, README.md)")
    if args.push:
        try:
            url = push_to_hub(result.out, args.push, private=args.private)
        except HFDataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"pushed to {url}")
    return 0


def run_fetch_official(args: argparse.Namespace) -> int:
    try:
        release = fetch_official(args.out or data_home() / "official", args.revision, args.include)
    except HFDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"release in {release.release}; {len(release.archives)} image archives unpacked into "
          f"{release.folder / 'images'}")
    print(f"images resolve under {release.image_root}: {release.images_found} of the {release.images_checked} checked")
    if release.images_found < release.images_checked:
        print("warning: some images do not resolve; `eval --skip-missing` evaluates the samples that have theirs",
              file=sys.stderr)
    for path in release.other_files:
        print(f"  other file: {path}")
    if not release.bench_files:
        print("no benchmark files (visual_same_view.jsonl, text-normal.jsonl, ...) found; see the files above",
              file=sys.stderr)
        return 1
    files = " ".join(shlex.quote(str(p)) for p in release.bench_files)
    print(f"evaluate with:\n  progresslm eval --bench {files} --image-root {shlex.quote(str(release.image_root))}")
    return 0
