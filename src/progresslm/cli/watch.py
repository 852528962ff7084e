"""`progresslm watch`: run the progress monitor over a video or a folder of frames.

Writes OUT/curve.png (raw answers, the smoothed estimate with its band, events marked),
OUT/events.json (settings, summary, events and one record per frame; rewritten after every
batch, so an interrupted run keeps what it scored) and, with --video, OUT/overlay.mp4 (each scored
frame above the curve so far). See docs/watch.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from progresslm.backends.registry import BACKENDS, DEFAULT_BACKEND
from progresslm.cli.options import OptionError, add_backend_options, backend_options, slug
from progresslm.io import write_text_atomic
from progresslm.online.drawing import DrawingError, Overlay, plot_curve
from progresslm.online.sources import DIR_FPS, VIDEO_FPS, Frame, Source, SourceError, image_files, open_source
from progresslm.prompts import MODES


class WatchError(ValueError):
    """A bad input to `progresslm watch`: says what and where."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="run the progress monitor over a video or a folder of frames",
        description="Score each sampled frame of a video (or each image of a folder, in natural name order) "
        "against a demonstration, smooth the answers and raise events (progress, stall, regression, done, "
        "off_task). Writes OUT/curve.png, OUT/events.json and, with --video, OUT/overlay.mp4.",
    )
    parser.add_argument("source", metavar="VIDEO|FRAME_DIR", help="a video file or a folder of image files")
    demo = parser.add_mutually_exclusive_group()
    demo.add_argument("--demo", nargs="+", metavar="KEYFRAME", help="demonstration keyframe images, in order")
    demo.add_argument("--demo-dir", metavar="DIR", help="a folder of keyframe images (natural name order)")
    demo.add_argument("--demo-text", nargs="+", metavar="STEP", help="demonstration step descriptions, in order")
    parser.add_argument("--goal", help="the task goal, e.g. 'open the drawer'")
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
    monitor.add_argument("--stall-seconds", type=float, default=10.0, help="0 turns time-based stalls off")
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


def demo_items(args: argparse.Namespace) -> tuple[list, str]:
    """The demonstration as a list of keyframe paths or step texts, and its kind."""
    if args.demo_text:
        steps = [step.strip() for step in args.demo_text]
        if any(not step for step in steps):
            raise WatchError("--demo-text: a step is empty")
        return steps, "text"
    if args.demo_dir:
        files = image_files(Path(args.demo_dir), "--demo-dir")
    elif args.demo:
        files = [Path(name) for name in args.demo]
        for file in files:
            if not file.is_file():
                raise WatchError(f"--demo: keyframe {file} does not exist")
    else:
        raise WatchError("no demonstration: give --demo KEYFRAME..., --demo-dir DIR or --demo-text STEP...")
    if len(files) < 2:
        raise WatchError(f"{'--demo-dir' if args.demo_dir else '--demo'}: a visual demonstration needs at least "
                         f"2 keyframes (the start and the end), got {len(files)}")  # fmt: skip
    return [str(file) for file in files], "visual"


def _check_args(args: argparse.Namespace) -> None:
    if not args.goal or not args.goal.strip():
        raise WatchError("--goal: give the task goal, e.g. --goal 'open the drawer'")
    if args.mode not in MODES:
        raise WatchError(f"--mode: {args.mode!r} is not one of {', '.join(MODES)}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise WatchError(f"--fps: expected a rate > 0, got {args.fps:g}")
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


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def events_record(settings: dict, monitor, sources: list[str], complete: bool, skipped=()) -> dict:
    steps = [dict(step.to_dict(), source=source) for step, source in zip(monitor.history, sources)]
    return {"complete": complete, "settings": settings, "summary": monitor.summary(),
            "events": [event.to_dict() for event in monitor.events], "steps": steps,
            "skipped": list(skipped)}  # fmt: skip


# ---- the command --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from progresslm.backends.base import BackendError
    from progresslm.backends.registry import UnknownBackendError, backend_class
    from progresslm.online.monitor import MonitorError
    from progresslm.online.scorer import ScorerError

    try:
        backend_class(args.backend)
        options = backend_options(args)
        _check_args(args)
        demo, demo_kind = demo_items(args)
        source = open_source(Path(args.source), args.fps, args.every, args.on_bad_frame)
    except (UnknownBackendError, WatchError, SourceError, DrawingError, OptionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / "watch" / (slug(source.path.stem) or "source"))
    try:
        return _watch(args, options, source, demo, demo_kind, out)
    except (WatchError, SourceError, DrawingError, MonitorError, ScorerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BackendError as err:
        saved = out / "events.json"
        note = f"\nFrames scored so far are in {saved}." if saved.exists() else ""
        print(f"error: {err}{note}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: frames scored so far are in {out / 'events.json'}", file=sys.stderr)
        return 130


def _watch(args: argparse.Namespace, options, source: Source, demo: list, demo_kind: str, out: Path) -> int:
    from tqdm.auto import tqdm

    from progresslm import __version__
    from progresslm.online.monitor import ProgressMonitor
    from progresslm.online.scorer import ProgressScorer

    out.mkdir(parents=True, exist_ok=True)
    with ProgressScorer(args.goal, demo, backend=args.backend, options=options, mode=args.mode,
                        demo_kind=demo_kind) as scorer:  # fmt: skip
        monitor = ProgressMonitor(
            scorer,
            samples=args.num_samples,
            stall_seconds=args.stall_seconds or None,
            stall_frames=args.stall_frames,
            min_gain=args.min_gain / 100,
            regression_drop=args.regression_drop / 100,
            done_threshold=args.done_threshold / 100,
            done_frames=args.done_frames,
            off_task_frames=args.off_task_frames,
            milestones=args.milestones,
        )
        settings = {
            "progresslm": __version__,
            "source": str(source.path), "source_kind": source.kind, "native_fps": source.native_fps,
            "fps": args.fps or (VIDEO_FPS if source.kind == "video" else DIR_FPS), "every": args.every,
            "batch": args.batch_size, "goal": args.goal, "demo": demo, "demo_kind": demo_kind,
            "backend": args.backend, "model": scorer.backend.model_name, "mode": args.mode,
            "options": dataclasses.asdict(options), "monitor": monitor.settings(),
        }  # fmt: skip
        overlay = Overlay(out / "overlay.mp4", source.rate, source.duration_s) if args.video else None
        sources: list[str] = []
        bar = tqdm(total=source.count, desc=f"watch {args.backend}", unit="frame", disable=args.quiet)
        try:
            for batch in _batches(source.frames, args.batch_size):
                steps = monitor.update_many([f.image for f in batch], [f.t for f in batch])
                sources.extend(f.source for f in batch)
                if overlay is not None:
                    for frame, step in zip(batch, steps):
                        overlay.add(frame.image, monitor.history[: step.index + 1],
                                    [e for e in monitor.events if e.index <= step.index])  # fmt: skip
                _write_json(out / "events.json", events_record(settings, monitor, sources, False, source.skipped))
                bar.update(len(batch))
                if steps[-1].smoothed is not None:
                    bar.set_postfix(progress=f"{steps[-1].smoothed:.0%}")
        finally:
            bar.close()
            if overlay is not None:
                overlay.close()
    if not monitor.history:
        raise WatchError(f"source: {source.path} gave no frames to score")
    _write_json(out / "events.json", events_record(settings, monitor, sources, True, source.skipped))
    voc = monitor.summary()["voc"]
    title = f"{args.goal}  ({settings['model']}, {len(monitor.history)} frames, VOC {'n/a' if voc is None else f'{voc:.2f}'})"
    plot_curve(monitor.history, monitor.events, out / "curve.png", title)
    summary = monitor.summary()
    for event in monitor.events:
        print(f"{event.t:8.1f}s  {event.kind:<10} {event.detail}")
    progress = "n/a" if summary["progress"] is None else f"{summary['progress']:.0f}%"
    voc = "n/a" if summary["voc"] is None else f"{summary['voc']:.3f}"
    print(f"{summary['frames']} frames ({summary['na']} N/A, {summary['parse_failures']} unreadable), "
          f"final progress {progress}, VOC {voc}, done: {'yes' if summary['done'] else 'no'}; outputs in {out}")  # fmt: skip
    return 0


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
