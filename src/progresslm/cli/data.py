"""`progresslm data build|episodes|export-lerobot`: users' own robot data (LeRobot datasets, video or frame folders,
robomimic HDF5) as Progress-Bench-style samples, a listing of its episodes, or a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from progresslm.builder.engines import ENGINES, EngineError, JobError
from progresslm.data.data_build import DataBuildConfig, DataBuildError, build
from progresslm.data.episode_sources import open_episodes, select
from progresslm.data.episodes import EpisodeSourceError
from progresslm.data.lerobot_export import LeRobotExportError, export_lerobot
from progresslm.data.video import VideoError

SOURCE_HELP = ("lerobot:DIR (or a Hub dataset id), videos:DIR, frames:DIR or hdf5:FILE; a bare path is recognised "
               "by what it holds")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="read your own robot data: benchmark and training samples")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    build = commands.add_parser(
        "build",
        help="Progress-Bench-style samples from your episodes (resumable)",
        description="Turn episodes into samples in the authors' JSONL format with images, split into bench / sft / "
        "rl folders with a dataset card, which `eval`, `train sft` and `train grpo` read. Key frames come from "
        "annotations when the source has them, else uniformly spaced; progress is linear in time between key "
        "frames; the demonstration comes from another episode of the same task; a killed build resumes.",
    )
    build.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--keyframes", default="auto", help="auto (the source's key steps, else uniform:5) | "
                       "uniform:N | column:NAME (a per-frame column changing at each step end) | times:FILE "
                       "(JSON or CSV of step end times per episode)")
    build.add_argument("--per-interval", type=int, default=2, help="observation frames inside each key-frame interval")
    build.add_argument("--split-by", default="task", choices=["task", "episode"], help="what the splits keep apart")
    build.add_argument("--splits", default="bench:1", help="shares of bench / sft / rl, e.g. bench:0.5,sft:0.4,rl:0.1")
    build.add_argument("--episodes", metavar="RANGES", help="episode indices to use, e.g. 0-9,12 (default: all)")
    build.add_argument("--cameras", nargs="+", metavar="CAMERA", help="cameras to draw from (default: all)")
    build.add_argument("--size", type=int, default=224, help="shorter image side in pixels (larger images shrink)")
    build.add_argument("--fps", type=float, help="frame rate of frame folders or HDF5 files that state none")
    build.add_argument("--task", help="task text of an HDF5 file (default: its env_name)")
    build.add_argument("--filter-key", metavar="KEY", help="robomimic HDF5: only the demos of mask/KEY (e.g. train, "
                       "valid); the same as the source hdf5:FILE#KEY")
    build.add_argument("--seed", type=int, default=0, help="seed of the splits and pairings")
    build.add_argument("--workers", type=int, default=1, help="processes reading and writing episodes (1: this "
                       "one); with --engine ray and no cluster address, the CPUs of a local Ray instance")
    build.add_argument("--engine", default="local", choices=ENGINES, help="where episodes are built: local "
                       "processes, or Ray tasks (pip install -e '.[ray]'); on a Ray cluster SOURCE and --out must be "
                       "on storage every node sees, since the workers read the episodes and write the images "
                       "(docs/scale.md)")
    build.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster's head, e.g. HEAD:6379 (default: "
                       "$RAY_ADDRESS, else a local Ray instance)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=run_build)

    episodes = commands.add_parser("episodes", help="list a source's episodes: task, cameras, length, annotations")
    episodes.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    episodes.add_argument("--fps", type=float, help="frame rate of frame folders or HDF5 files that state none")
    episodes.add_argument("--task", help="task text of an HDF5 file (default: its env_name)")
    episodes.add_argument("--filter-key", metavar="KEY", help="robomimic HDF5: only the demos of mask/KEY")
    episodes.set_defaults(handler=run_episodes)

    export = commands.add_parser(
        "export-lerobot",
        help="write any source's episodes as a LeRobot v3.0 dataset",
        description="Write the episodes as a LeRobot v3.0 dataset (Parquet frame rows, one MP4 per camera packing the "
        "episodes back to back, the metadata LeRobot reads). Key steps become a per-frame subtask_index column "
        "and per-episode step columns (LeRobot's SARM names); numeric and string per-frame columns are copied. "
        "The dataset appears in OUT only once complete.",
    )
    export.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    export.add_argument("--out", required=True, help="dataset folder to create (new or empty)")
    export.add_argument("--codec", default="libx264", choices=["libx264", "libsvtav1"],
                        help="video encoder: H.264, or AV1 (LeRobot's default; smaller, slower to encode)")
    export.add_argument("--size", type=int, help="shorter image side in pixels (larger frames shrink; default: as "
                        "recorded)")
    export.add_argument("--episodes", metavar="RANGES", help="episode indices to export, e.g. 0-9,12 (default: all)")
    export.add_argument("--fps", type=float, help="frame rate of frame folders or HDF5 files that state none")
    export.add_argument("--task", help="task text of an HDF5 file (default: its env_name)")
    export.add_argument("--filter-key", metavar="KEY", help="robomimic HDF5: only the demos of mask/KEY")
    export.add_argument("--robot-type", default="unknown", help="robot_type written in meta/info.json")
    export.add_argument("--overwrite", action="store_true", help="replace the LeRobot dataset already in --out")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(handler=run_export_lerobot)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _source(args: argparse.Namespace) -> str:
    """SOURCE with --filter-key written into it (hdf5:FILE#KEY), so that what is recorded can be run again."""
    key = getattr(args, "filter_key", None)
    if not key:
        return args.source
    spec = args.source if args.source.startswith("hdf5:") else f"hdf5:{args.source}"
    return f"{spec}#{key}"


def run_build(args: argparse.Namespace) -> int:
    command = getattr(args, "command_line", None) or "progresslm data build"
    try:
        config = DataBuildConfig(
            source=_source(args), out=args.out, keyframes=args.keyframes, per_interval=args.per_interval,
            split_by=args.split_by, splits=args.splits, seed=args.seed, size=args.size, episodes=args.episodes,
            cameras=args.cameras, fps=args.fps, task=args.task, workers=args.workers, engine=args.engine,
            ray_address=args.ray_address, command=command,
        )
        outcome = build(config, progress=not args.quiet)
    except (DataBuildError, EpisodeSourceError, VideoError, EngineError, JobError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((outcome.out / "card.md").read_text())
    print(f"built {outcome.built} new episode units of {outcome.episodes} episodes "
          f"in {outcome.seconds:.1f} s; data in {outcome.out}")
    bench = outcome.files.get("bench")
    if bench:
        print(f"evaluate: progresslm eval --bench {outcome.out}/bench/*.jsonl --image-root {outcome.image_root}")
    return 0


def run_episodes(args: argparse.Namespace) -> int:
    try:
        options = {k: v for k, v in (("fps", args.fps), ("task", args.task)) if v is not None}
        episodes = open_episodes(_source(args), **options)
    except (EpisodeSourceError, VideoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(episodes)} episodes, {len({e.task for e in episodes})} tasks")
    for e in episodes:
        notes = []
        if e.keysteps:
            notes.append(f"{len(e.keysteps)} key steps")
        extra = [c for c in e.columns if c != "timestamp"]
        if extra:
            notes.append("columns " + ", ".join(extra))
        print(f"{e.index:>4}  {e.id}  {e.length} frames @ {e.fps:g} fps ({e.duration:.1f} s)  "
              f"cameras {', '.join(e.cameras)}  task: {e.task}" + (f"  [{'; '.join(notes)}]" if notes else ""))
    return 0


def run_export_lerobot(args: argparse.Namespace) -> int:
    options = {k: v for k, v in (("fps", args.fps), ("task", args.task)) if v is not None}
    try:
        episodes = select(open_episodes(_source(args), **options), args.episodes)
        root = export_lerobot(episodes, Path(args.out), codec=args.codec, size=args.size, robot_type=args.robot_type,
                              overwrite=args.overwrite, progress=not args.quiet)
    except (LeRobotExportError, EpisodeSourceError, VideoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frames = sum(e.length for e in episodes)
    print(f"wrote {len(episodes)} episodes ({frames} frames) as a LeRobot v3.0 dataset: {root}")
    print(f"check: progresslm data episodes lerobot:{root}")
    return 0
