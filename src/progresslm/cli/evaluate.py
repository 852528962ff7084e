"""`progresslm eval`: run a backend over a benchmark, resumably, and write metrics and a report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from progresslm.backends.base import BackendError
from progresslm.backends.registry import BACKENDS, DEFAULT_BACKEND, UnknownBackendError, backend_class
from progresslm.bench.example import build_example, default_example_dir
from progresslm.bench.format import BenchFormatError
from progresslm.cli.options import OptionError, add_backend_options, backend_options
from progresslm.data.hf_datasets import HFDataError, hf_location, materialize
from progresslm.evaluation import EvalConfig, EvalError, evaluate
from progresslm.io import expand_files, expand_path, slug
from progresslm.prompts import MODES
from progresslm.report_tables import Run, load_run
from progresslm.sim.sim_build import build_small_bench, simulator_problem, small_bench_ready
from progresslm.summary import print_summary

log = logging.getLogger("progresslm")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a backend on a benchmark",
        description="Evaluate a backend on a benchmark. Each reply is saved as it arrives in OUT/results.jsonl; "
        "re-running the same command resumes. Without --bench, the small simulated benchmark is built (once) and used.",
    )
    parser.add_argument("--bench", nargs="+", metavar="FILE",
                        help="benchmark JSONL files (the authors' format), or one folder written by `progresslm bench "
                        "export`, or a Hub dataset id (owner/name) of one: its rows are written back as JSONL files "
                        "and images (docs/hf.md)")
    parser.add_argument("--bench-split", metavar="SPLIT",
                        help="with an exported folder or Hub id: the split to evaluate (default: bench, or the only "
                        "one)")
    parser.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name>")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of: {', '.join(sorted(BACKENDS))}")
    parser.add_argument("--mode", default="two-stage", help=f"one of: {', '.join(MODES)}")
    parser.add_argument("--out", help="run folder (default: runs/<bench>/<backend>-<model>-<mode>)")
    parser.add_argument("--num-samples", type=int, default=1, help="replies per sample (use with --temperature)")
    parser.add_argument("--skip-missing", action="store_true", help="evaluate samples whose images exist")
    parser.add_argument("--allow-outside-image-root", action="store_true",
                        help="read image paths that resolve outside --image-root (absolute names, '..', symlinks); "
                        "refused by default so that a benchmark file cannot send other files to a model server")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="a seeded subset of about N samples, each split in proportion, whole trajectories (so PRC "
                        "stays defined); the seed is --seed")
    parser.add_argument("--first", type=int, metavar="N", help="only the first N samples, in file order")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for 95%% intervals (0: none)")
    parser.add_argument("--swap-demos", action="store_true",
                        help="also pair each observation with another task's demonstration and report the share "
                        "of answers that change (a model that uses the demonstration answers N/A or changes)")
    parser.add_argument("--hints", choices=["none", "matcher"],
                        help="retrieval hints in every prompt: the matcher's similarity of the observation to each "
                        "keyframe or step, and its mismatch probability (default: none, except for backends trained "
                        "with them: nano)")
    parser.add_argument("--hints-model", metavar="DIR", help="matcher checkpoint that writes the hints (default: shipped)")
    parser.add_argument("--no-floors", action="store_true", help="leave the constant/random rows out of the report")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    add_backend_options(parser)
    parser.set_defaults(handler=run)


def default_out(bench: list[str], backend: str, model: str | None, mode: str, value: float) -> Path:
    bench_name = (Path(bench[0]).parent.name or "bench") if len(bench) > 1 else Path(bench[0]).stem
    tag = backend if backend != "constant" else f"constant{value:g}"
    if model:
        tag += "-" + slug(Path(model).name or model)
    return Path("runs") / slug(bench_name) / f"{tag}-{mode}"


def default_bench(quiet: bool) -> tuple[list[str], str]:
    """The small simulated benchmark (built on first use); the drawn example when the simulator cannot run here
    (MuJoCo / Meta-World not installed, no offscreen GL). The check comes first, so nothing half-built is left."""
    problem = None if small_bench_ready() else simulator_problem()
    if problem is None:
        outcome = build_small_bench(progress=not quiet)
        log.info("no --bench given: using the small simulated benchmark in %s", outcome.out)
        return [str(path) for path in outcome.bench_files()], str(outcome.image_root)
    log.warning("the simulator is not available (%s): using the drawn example benchmark instead", problem)

    example = build_example(default_example_dir())
    return [str(path) for path in example.files], str(example.root / "images")


def exported_bench(bench: list[str], image_root: str | None, split: str | None,
                   quiet: bool) -> tuple[list[str], str | None]:  # fmt: skip
    """`--bench` as given, unless it is an exported folder or a Hub dataset id: then the JSONL files and image root it
    is written back to (progresslm.data.hf_datasets.materialize, in the data folder's hf/)."""
    location = bench[0]
    if len(bench) > 1 or hf_location(location) is None:
        if split:
            raise HFDataError("--bench-split goes with an exported folder or a Hub dataset id, not with JSONL files")
        files = []
        for pattern in bench:  # a quoted glob ("OUT/bench/*.jsonl") as `train` reads it
            matches = expand_files([pattern]) or [Path(p) for p in [expand_path(pattern)] if Path(p).exists()]
            if not matches:
                raise HFDataError(f"--bench {pattern}: the pattern matches no file")
            files += [str(path) for path in matches]
        return files, image_root
    if image_root:
        raise HFDataError(f"--image-root does not go with an exported dataset ({location}): its images are inside it")
    written = materialize(location, split=split, progress=not quiet)
    log.info("%s (split %s): %d rows %s %s", location, written.split, written.rows,
             "already written in" if written.reused else "written to", written.folder)
    return [str(p) for p in written.files], str(written.image_root)


def run(args: argparse.Namespace) -> int:
    try:
        backend_class(args.backend)
    except UnknownBackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bench, image_root = args.bench, args.image_root
    if not bench:
        try:
            bench, image_root = default_bench(args.quiet)
        except (RuntimeError, ValueError) as err:  # RenderError, SimBuildError
            print(f"error: could not build the default simulated benchmark: {err}", file=sys.stderr)
            return 2
    if args.bench:
        try:
            bench, image_root = exported_bench(args.bench, image_root, args.bench_split, args.quiet)
        except ValueError as err:  # HFDataError
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        options = backend_options(args)
    except OptionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or default_out(bench, args.backend, args.model, args.mode, args.value)
    try:
        config = EvalConfig(
            bench=bench,
            out=str(out),
            backend=args.backend,
            mode=args.mode,
            image_root=image_root,
            num_samples=args.num_samples,
            skip_missing=args.skip_missing,
            allow_outside_image_root=args.allow_outside_image_root,
            limit=args.limit,
            first=args.first,
            bootstrap=args.bootstrap,
            floors=not args.no_floors,
            swap_demos=args.swap_demos,
            plots=not args.no_plots,
            hints=args.hints,
            hints_model=args.hints_model,
            options=options,
        )
        outcome = evaluate(config, progress=not args.quiet)
    except (EvalError, BenchFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BackendError as err:
        saved = Path(out) / "results.jsonl"
        note = f"\nReplies received so far are saved in {saved}; re-run to resume." if saved.exists() else ""
        print(f"error: {err}{note}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: replies so far are saved in {out}/results.jsonl; re-run the same command to resume.",
              file=sys.stderr)
        return 130
    print_run_summary(outcome.out)
    print(f"{outcome.done} new replies, {outcome.reused} reused. Full tables and plots:")
    print(f"  {outcome.out / 'report.html'}")
    return 0


def print_run_summary(out: Path) -> None:
    """The run beside its floors, in one table that fits 100 columns (`progresslm.summary`)."""
    runs = [load_run(out)]
    floors = out / "floors.json"
    if floors.is_file():
        runs += [Run(name, metrics, {"backend": name}) for name, metrics in json.loads(floors.read_text()).items()]
    print_summary(runs)
