"""`progresslm watch`: run the progress monitor over a video, a folder of frames, or many episodes of robot data.

Writes OUT/curve.png (raw answers, the smoothed estimate with its band, events marked),
OUT/events.json (settings, summary, events and one record per frame; rewritten after every
batch, so an interrupted run keeps what it scored) and, with --video, OUT/overlay.mp4 (each scored
frame above the curve so far). With --source, one such folder per episode under OUT, and OUT/summary.md,
OUT/summary.json and OUT/grid.png across episodes. See docs/watch.md and docs/own-data.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from progresslm.backends.base import BackendError
from progresslm.backends.registry import BACKENDS, DEFAULT_BACKEND, UnknownBackendError, backend_class
from progresslm.cli.options import OptionError, add_backend_options, backend_options
from progresslm.data.episode_sources import open_episodes, select
from progresslm.data.episodes import EpisodeSourceError
from progresslm.data.folders import video_episode
from progresslm.data.video import VideoError
from progresslm.io import slug
from progresslm.online.drawing import DrawingError
from progresslm.online.frame_sources import (
    DIR_FPS,
    VIDEO_FPS,
    SourceError,
    clip,
    image_files,
    open_source,
)
from progresslm.online.monitor import DEFAULT_STALL_SECONDS, MonitorError
from progresslm.online.scorer import ScorerError
from progresslm.online.watching import WatchError, WatchRun, demo_from_episode, episode_sources, watch
from progresslm.prompts import MODES


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="run the progress monitor over a video or a folder of frames",
        description="Score each sampled frame of a video (or each image of a folder, in natural name order) "
        "against a demonstration, smooth the answers and raise events (progress, stall, regression, done, "
        "off_task). Writes OUT/curve.png, OUT/events.json and, with --video, OUT/overlay.mp4.",
    )
    parser.add_argument("source", nargs="?", metavar="VIDEO|FRAME_DIR", help="a video file or a folder of image files")
    parser.add_argument("--source", dest="episodes_source", metavar="SOURCE", help="episodes of robot data instead: "
                        "lerobot:DIR, videos:DIR, frames:DIR or hdf5:FILE (see `progresslm data episodes`)")
    parser.add_argument("--episodes", metavar="RANGES", help="with --source: episode indices, e.g. 0-9 (default: all)")
    parser.add_argument("--camera", help="with --source: the camera to watch (default: each episode's first)")
    parser.add_argument("--start", type=float, help="seconds from the start of each video or episode to begin at")
    parser.add_argument("--end", type=float, help="seconds from the start of each video or episode to stop at")
    demo = parser.add_mutually_exclusive_group()
    demo.add_argument("--demo-episode", type=int, metavar="K", help="with --source: episode K is the demonstration")
    demo.add_argument("--demo-video", metavar="FILE", help="a video of the task done: its keyframes are the demo")
    demo.add_argument("--demo", nargs="+", metavar="KEYFRAME", help="demonstration keyframe images, in order")
    demo.add_argument("--demo-dir", metavar="DIR", help="a folder of keyframe images (natural name order)")
    demo.add_argument("--demo-text", nargs="+", metavar="STEP", help="demonstration step descriptions, in order")
    parser.add_argument("--demo-keyframes", default="auto", help="keyframes of --demo-episode / --demo-video: auto "
                        "(annotated key steps, else uniform:5) | uniform:N | column:NAME | times:FILE")
    parser.add_argument("--goal", help="the task goal, e.g. 'open the drawer' (default with --demo-episode: its task)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of: {', '.join(sorted(BACKENDS))}")
    parser.add_argument("--mode", default="two-stage", help=f"one of: {', '.join(MODES)}")
    parser.add_argument("--fps", type=float, help=f"video: frames sampled per second (default {VIDEO_FPS:g}); "
                        f"frame folder: the rate its frames were taken at, for timestamps (default {DIR_FPS:g})")
    parser.add_argument("--every", type=int, default=1, help="score only every Nth (sampled) frame")
    parser.add_argument("--out", help="output folder (default: runs/watch/<source name>)")
    parser.add_argument("--video", action="store_true", help="also write OUT/overlay.mp4")
    parser.add_argument("--on-bad-frame", choices=["skip", "fail"], default="skip",
                        help="a frame file that cannot be read or is smaller than 8 x 8: skip it with a warning "
                        "naming it (default), or stop the run there")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    monitor = parser.add_argument_group("monitor options (percentages are of the task)")
    monitor.add_argument("--num-samples", type=int, default=1, help="draws per frame; needs --temperature > 0")
    monitor.add_argument("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS,
                         help=f"no gain for this long is a stall (default {DEFAULT_STALL_SECONDS:g}, from "
                         "experiments/done_stall_study.py); 0 turns time-based stalls off")
    monitor.add_argument("--stall-frames", type=int, help="stall after this many frames without gain")
    monitor.add_argument("--min-gain", type=float, default=2.0, help="percent: smaller gains do not end a stall")
    monitor.add_argument("--regression-drop", type=float, default=10.0, help="percent below the running maximum")
    monitor.add_argument("--done-threshold", type=float, default=95.0, help="percent counted as done")
    monitor.add_argument("--done-frames", type=int, default=2, help="answered frames in a row at the threshold")
    monitor.add_argument("--off-task-frames", type=int, default=3, help="N/A frames in a row counted as off task")
    monitor.add_argument("--milestones", default="tenths", choices=["tenths", "steps"],
                         help="progress events every 10%% or at the demonstration's step boundaries")
    add_backend_options(parser, batch_size="frames scored in one backend call (and one monitor update)")
    parser.set_defaults(handler=run)


# ---- inputs -------------------------------------------------------------------------------


def demo_items(args: argparse.Namespace, episodes=None) -> tuple[list, str]:
    """The demonstration as keyframes (paths or images) or step texts, and its kind."""
    if args.demo_text:
        steps = [step.strip() for step in args.demo_text]
        if any(not step for step in steps):
            raise WatchError("--demo-text: a step is empty")
        return steps, "text"
    if args.demo_episode is not None or args.demo_video:
        episode = demo_episode(args, episodes)
        images, _, args.demo_camera = demo_from_episode(episode, args.camera, args.demo_keyframes)
        args.goal = args.goal or episode.task
        return images, "visual"
    if args.demo_dir:
        files = image_files(Path(args.demo_dir), "--demo-dir")
    elif args.demo:
        files = [Path(name) for name in args.demo]
        for file in files:
            if not file.is_file():
                raise WatchError(f"--demo: keyframe {file} does not exist")
    else:
        raise WatchError("no demonstration: give --demo KEYFRAME..., --demo-dir DIR, --demo-text STEP..., "
                         "--demo-video FILE or (with --source) --demo-episode K")
    if len(files) < 2:
        raise WatchError(f"{'--demo-dir' if args.demo_dir else '--demo'}: a visual demonstration needs at least "
                         f"2 keyframes (the start and the end), got {len(files)}")  # fmt: skip
    return [str(file) for file in files], "visual"


def demo_episode(args: argparse.Namespace, episodes):
    if args.demo_video:
        return video_episode(Path(args.demo_video))
    if episodes is None:
        raise WatchError("--demo-episode needs --source (the episodes it indexes)")

    return select(episodes, str(args.demo_episode), "--demo-episode")[0]


def _check_args(args: argparse.Namespace, goal: bool = True) -> None:
    """Every number checked where it enters (NaN and infinity pass argparse's float()); `goal=False` before the
    demonstration episode may have given the goal."""
    if goal and (not args.goal or not args.goal.strip()):
        raise WatchError("--goal: give the task goal, e.g. --goal 'open the drawer'")
    if args.mode not in MODES:
        raise WatchError(f"--mode: {args.mode!r} is not one of {', '.join(MODES)}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise WatchError(f"--fps: expected a rate > 0, got {args.fps:g}")
    for name in ("start", "end"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise WatchError(f"--{name}: expected seconds >= 0 from the start, got {value:g}")
    if args.start is not None and args.end is not None and args.start > args.end:
        raise WatchError(f"--start {args.start:g} is after --end {args.end:g}")
    for name in ("every", "batch_size", "num_samples", "done_frames", "off_task_frames"):
        if getattr(args, name) < 1:
            raise WatchError(f"--{name.replace('_', '-')}: expected a whole number >= 1, got {getattr(args, name)}")
    if args.stall_frames is not None and args.stall_frames < 1:
        raise WatchError(f"--stall-frames: expected a whole number >= 1, got {args.stall_frames}")
    if not (math.isfinite(args.stall_seconds) and args.stall_seconds >= 0):
        raise WatchError(f"--stall-seconds: expected seconds >= 0 (0: no time-based stalls), "
                         f"got {args.stall_seconds:g}")
    for name, top_open in (("min_gain", True), ("regression_drop", False), ("done_threshold", False)):
        value = getattr(args, name)
        if not (math.isfinite(value) and 0 < value and (value < 100 if top_open else value <= 100)):
            bound = "< 100" if top_open else "<= 100"
            raise WatchError(f"--{name.replace('_', '-')}: expected a percentage > 0 and {bound}, got {value:g}")


# ---- the command --------------------------------------------------------------------------


def monitor_settings(args: argparse.Namespace) -> dict:
    """ProgressMonitor's keyword arguments from the monitor options (percentages as fractions)."""
    return {"samples": args.num_samples, "stall_seconds": args.stall_seconds or None,
            "stall_frames": args.stall_frames, "min_gain": args.min_gain / 100,
            "regression_drop": args.regression_drop / 100, "done_threshold": args.done_threshold / 100,
            "done_frames": args.done_frames, "off_task_frames": args.off_task_frames,
            "milestones": args.milestones}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    bad_input = (UnknownBackendError, WatchError, SourceError, DrawingError, OptionError, EpisodeSourceError,
                 VideoError, ValueError)
    args.demo_camera = None
    try:
        backend_class(args.backend)
        options = backend_options(args)
        if (args.source is None) == (args.episodes_source is None):
            raise WatchError("give one source: a VIDEO or FRAME_DIR, or --source SOURCE for episodes of robot data")
        _check_args(args, goal=False)
        episodes = chosen = None
        if args.episodes_source:
            episodes = open_episodes(args.episodes_source)
            chosen = select(episodes, args.episodes)
        demo, demo_kind = demo_items(args, episodes)
        _check_args(args)
        if chosen is None:
            sources = [clip(open_source(Path(args.source), args.fps, args.every, args.on_bad_frame), args.start, args.end)]
            outs = [Path(args.out or Path("runs") / "watch" / (slug(sources[0].path.stem) or "source"))]
        else:
            root = Path(args.out or Path("runs") / "watch" / (slug(Path(args.episodes_source).name) or "episodes"))
            sources, outs = episode_sources(chosen, args.camera, args.fps, args.every, args.start, args.end, root)
    except bad_input as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plan = WatchRun(goal=args.goal, demo=demo, demo_kind=demo_kind, backend=args.backend, options=options,
                    mode=args.mode, monitor=monitor_settings(args), batch_size=args.batch_size, video=args.video,
                    quiet=args.quiet, fps=args.fps, every=args.every, start=args.start, end=args.end,
                    demo_source=args.demo_video or args.demo_episode, demo_camera=args.demo_camera,
                    demo_episode=args.demo_episode if args.demo_video is None else None,
                    episodes_source=args.episodes_source)  # fmt: skip
    out = outs[0] if chosen is None else outs[0].parent
    try:
        watched = watch(plan, sources, outs, chosen)
    except (WatchError, SourceError, DrawingError, MonitorError, ScorerError, EpisodeSourceError, VideoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BackendError as err:
        print(f"error: {err}\nFrames scored so far are in the events.json files under {out}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: frames scored so far are in the events.json files under {out}", file=sys.stderr)
        return 130
    if chosen is None:
        summary = watched.summaries[0]
        for event in watched.monitors[0].events:
            print(f"{event.t:8.1f}s  {event.kind:<10} {event.detail}")
        progress = "n/a" if summary["progress"] is None else f"{summary['progress']:.0f}%"
        voc = "n/a" if summary["voc"] is None else f"{summary['voc']:.3f}"
        print(f"{summary['frames']} frames ({summary['na']} N/A, {summary['parse_failures']} unreadable), "
              f"final progress {progress}, VOC {voc}, done: {'yes' if summary['done'] else 'no'}; outputs in {out}")  # fmt: skip
        return 0
    print(watched.table)
    print(f"per episode: curve.png and events.json under {out}; across episodes: summary.md, summary.json, grid.png")
    return 0
