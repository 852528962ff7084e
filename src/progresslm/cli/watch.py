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
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from progresslm.backends.registry import BACKENDS
from progresslm.cli.evaluate import DEFAULT_BACKEND, _slug, add_backend_options, backend_options
from progresslm.prompts import MODES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_FPS = 2.0  # default sampling rate of a video: a VLM call per frame makes 30 frames/s too slow
DIR_FPS = 1.0  # default rate at which a folder's frames were taken, for their timestamps
OVERLAY_WIDTH = 480  # overlay frames are scaled to this width; the curve panel sits below
PANEL_HEIGHT = 128
EVENT_COLOURS = {"progress": "#2ca02c", "stall": "#ff7f0e", "regression": "#d62728", "done": "#9467bd",
                 "off_task": "#7f7f7f"}  # fmt: skip


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
    parser.add_argument("--batch", type=int, default=8, help="frames per scoring call")
    parser.add_argument("--out", help="output folder (default: runs/watch/<source name>)")
    parser.add_argument("--video", action="store_true", help="also write OUT/overlay.mp4")
    parser.add_argument("--on-bad-frame", choices=["skip", "fail"], default="skip",
                        help="a frame file that cannot be read or is smaller than 8 x 8: skip it with a warning "
                        "naming it (default), or stop the run there")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    monitor = parser.add_argument_group("monitor options (percentages are of the task)")
    monitor.add_argument("--samples", type=int, default=1, help="draws per frame; needs --temperature > 0")
    monitor.add_argument("--stall-seconds", type=float, default=10.0, help="0 turns time-based stalls off")
    monitor.add_argument("--stall-frames", type=int, help="stall after this many frames without gain")
    monitor.add_argument("--min-gain", type=float, default=2.0, help="percent: smaller gains do not end a stall")
    monitor.add_argument("--regression-drop", type=float, default=10.0, help="percent below the running maximum")
    monitor.add_argument("--done-threshold", type=float, default=95.0, help="percent counted as done")
    monitor.add_argument("--done-frames", type=int, default=2, help="answered frames in a row at the threshold")
    monitor.add_argument("--off-task-frames", type=int, default=3, help="N/A frames in a row counted as off task")
    monitor.add_argument("--milestones", default="tenths", choices=["tenths", "steps"],
                         help="progress events every 10%% or at the demonstration's step boundaries")
    add_backend_options(parser)
    parser.set_defaults(handler=run)


# ---- inputs -------------------------------------------------------------------------------


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value.

    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name))


def image_files(folder: Path, what: str) -> list[Path]:
    """The image files of `folder`, in natural name order; an error when there are none."""
    if not folder.is_dir():
        raise WatchError(f"{what}: {folder} is not a folder")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))  # fmt: skip
    if not files:
        raise WatchError(f"{what}: {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


MIN_SIDE = 8  # a frame smaller than this on either side shows nothing to score


def _read_image(path: Path):
    import numpy as np

    from progresslm.images import ImageReadError, read_image

    try:
        pixels = np.asarray(read_image(path))
    except ImageReadError as err:
        raise WatchError(str(err).replace("cannot read image", "not a readable image")) from None
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise WatchError(f"{path}: the frame is {pixels.shape[1]} x {pixels.shape[0]} pixels, too small to score")
    return pixels


def _folder_frames(files: list[Path], chosen: list[int], rate: float, on_bad: str, skipped: list[str]):
    """The chosen files as Frames; an unreadable or degenerate one is skipped with a warning naming it (or,
    with on_bad="fail", stops the run with that message)."""
    import logging

    for i in chosen:
        try:
            image = _read_image(files[i])
        except WatchError as err:
            if on_bad == "fail":
                raise
            logging.getLogger("progresslm").warning("skipping %s", err)
            skipped.append(str(err))
            continue
        yield Frame(files[i].name, i / rate, image)


_BANNER = ("ffmpeg version", "built with", "configuration:", "libav", "libsw", "libpostproc", "copyright")


def ffmpeg_reason(text: str) -> str:
    """What ffmpeg said went wrong, without its version banner (which fills the first 200 characters).

    >>> ffmpeg_reason("ffmpeg version 7.0 Copyright (c) 2000\\n  built with gcc 8\\n  configuration: --x\\nclip.mp4: Invalid data found")
    'clip.mp4: Invalid data found'
    """
    lines = [line.strip() for line in str(text).replace("\\n", "\n").splitlines()]
    meaningful = [line for line in lines if line and not line.lower().startswith(_BANNER)]
    return (meaningful[-1] if meaningful else lines[-1] if lines else "")[:200]


@dataclass(frozen=True)
class Frame:
    source: str  # the file name, or "frame N" of a video
    t: float  # seconds from the start
    image: object  # H x W x 3 uint8 array


@dataclass
class Source:
    kind: str  # "frames" or "video"
    path: Path
    frames: Iterator[Frame]
    count: int | None  # frames that will be scored, when known
    rate: float  # frames scored per second of the source
    duration_s: float | None
    native_fps: float | None = None
    skipped: list[str] = dataclasses.field(default_factory=list)  # frames left out, each with why


def open_source(path: Path, fps: float | None, every: int, on_bad: str = "skip") -> Source:
    """The frames to score from a folder of images or a video, with their timestamps."""
    if not path.exists():
        raise WatchError(f"source: {path} does not exist; give a video file or a folder of frames")
    if path.is_dir():
        files = image_files(path, "source")
        rate = fps or DIR_FPS
        chosen = list(range(0, len(files), every))
        skipped: list[str] = []
        frames = _folder_frames(files, chosen, rate, on_bad, skipped)
        source = Source("frames", path, frames, len(chosen), rate / every, (len(files) - 1) / rate)
        source.skipped = skipped
        return source
    return _open_video(path, fps or VIDEO_FPS, every)


def _open_video(path: Path, fps: float, every: int) -> Source:
    try:
        import imageio.v3 as iio
    except ImportError:
        raise WatchError("reading a video needs imageio and imageio-ffmpeg: pip install 'progresslm[online]'") from None
    try:
        meta = iio.immeta(path)
    except Exception as err:  # imageio raises OSError, ValueError or its own types for unreadable files
        raise WatchError(f"source: cannot read {path} as a video ({type(err).__name__}: {ffmpeg_reason(err)})") from None
    native = float(meta.get("fps") or 0.0)
    if not math.isfinite(native) or native <= 0:
        raise WatchError(f"source: {path} states no frame rate; extract its frames to a folder and pass --fps")
    duration = meta.get("duration")
    duration = float(duration) if isinstance(duration, (int, float)) and math.isfinite(duration) else None
    rate = min(fps, native)
    count = None if duration is None else len(range(0, math.ceil(duration * rate - 1e-6), every))

    def frames() -> Iterator[Frame]:
        sampled = -1
        try:
            for number, image in enumerate(iio.imiter(path)):
                slot = math.floor(number * rate / native + 1e-9)  # the sampling tick this frame falls in
                if slot <= sampled:
                    continue
                sampled = slot
                if slot % every == 0:
                    yield Frame(f"frame {number}", number / native, image)
        except OSError as err:
            raise WatchError(f"source: {path} could not be decoded past frame {max(sampled, 0)} "
                             f"({ffmpeg_reason(err)})") from None

    return Source("video", path, frames(), count, rate / every, duration, native)


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
    for name in ("every", "batch", "samples", "done_frames", "off_task_frames"):
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


# ---- outputs ------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def events_record(settings: dict, monitor, sources: list[str], complete: bool, skipped=()) -> dict:
    steps = [dict(step.to_dict(), source=source) for step, source in zip(monitor.history, sources)]
    return {"complete": complete, "settings": settings, "summary": monitor.summary(),
            "events": [event.to_dict() for event in monitor.events], "steps": steps,
            "skipped": list(skipped)}  # fmt: skip


def _event_label(event) -> str:
    return event.detail.split(" (")[0] if event.kind == "progress" else event.kind.replace("_", " ")


def plot_curve(steps, events, path: Path, title: str) -> Path:
    """Raw answers as points, the smoothed estimate as a line inside its band, events as labelled lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    t = [s.t for s in steps]
    nan = float("nan")
    smoothed = [nan if s.smoothed is None else s.smoothed * 100 for s in steps]
    low = [nan if s.low is None else s.low * 100 for s in steps]
    high = [nan if s.high is None else s.high * 100 for s in steps]
    ax.fill_between(t, low, high, color="#1f77b4", alpha=0.18, linewidth=0, label="band")
    ax.plot(t, smoothed, color="#1f77b4", linewidth=2, label="smoothed")
    answered = [(s.t, s.raw * 100) for s in steps if s.raw is not None]
    if answered:
        ax.scatter(*zip(*answered), s=14, color="#444444", zorder=3, label="raw answer")
    for status, colour, label in (("na", "#7f7f7f", "N/A"), ("parse_failure", "#d62728", "unreadable")):
        times = [s.t for s in steps if s.status == status]
        if times:
            ax.scatter(times, [-4] * len(times), marker="x", s=20, color=colour, zorder=3, label=label)
    for event in events:
        colour = EVENT_COLOURS.get(event.kind, "black")
        ax.axvline(event.t, color=colour, linestyle="--", linewidth=1, alpha=0.8)
        ax.text(event.t, 103, _event_label(event), rotation=90, va="top", ha="right", fontsize=7, color=colour)
    ax.set_ylim(-8, 105)
    if len(t) > 1 and t[-1] > t[0]:
        ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("progress (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    figure.clear()
    return path


class Overlay:
    """Writes overlay.mp4 as frames arrive: each frame scaled to OVERLAY_WIDTH above the curve so far."""

    def __init__(self, path: Path, fps: float, t_end: float | None):
        try:
            import imageio_ffmpeg
        except ImportError:
            raise WatchError("--video needs imageio-ffmpeg: pip install 'progresslm[online]'") from None
        self.path, self.fps, self.t_end = path, fps, t_end
        self._ffmpeg = imageio_ffmpeg
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, image, steps, events) -> None:
        """Draw one frame: `steps` are the monitor's steps up to and including this frame's."""
        import numpy as np
        from PIL import Image, ImageDraw

        picture = Image.fromarray(np.asarray(image)[..., :3])
        if self._size is None:
            height = max(16, round(picture.height * OVERLAY_WIDTH / picture.width / 16) * 16)
            self._size = (OVERLAY_WIDTH, height + PANEL_HEIGHT)
            self._writer = self._ffmpeg.write_frames(str(self.path), self._size, fps=self.fps, macro_block_size=16)
            self._writer.send(None)
        width, total = self._size
        canvas = Image.new("RGB", self._size, "white")
        canvas.paste(picture.resize((width, total - PANEL_HEIGHT), Image.BILINEAR), (0, 0))
        self._panel(ImageDraw.Draw(canvas), total - PANEL_HEIGHT, steps, events)
        self._writer.send(np.asarray(canvas).tobytes())
        self.frames += 1

    def _panel(self, draw, top: int, steps, events) -> None:
        left, right, y0, y1 = 8, OVERLAY_WIDTH - 8, top + 22, top + PANEL_HEIGHT - 8
        start = steps[0].t
        span = max((self.t_end or 0.0) - start, steps[-1].t - start, 1e-6)

        def xy(t: float, fraction: float) -> tuple[float, float]:
            return left + (right - left) * (t - start) / span, y1 - (y1 - y0) * fraction

        draw.rectangle((left, y0, right, y1), outline="#bbbbbb")
        known = [s for s in steps if s.smoothed is not None]
        if len(known) > 1:
            band = [xy(s.t, s.high) for s in known] + [xy(s.t, s.low) for s in reversed(known)]
            draw.polygon(band, fill="#c6dbef")
            draw.line([xy(s.t, s.smoothed) for s in known], fill="#1f77b4", width=2)
        for s in steps:
            x, y = xy(s.t, s.raw if s.raw is not None else 0.0)
            colour = "#444444" if s.raw is not None else "#7f7f7f"
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
        for event in events:
            x, _ = xy(event.t, 0.0)
            draw.line([(x, y0), (x, y1)], fill=EVENT_COLOURS.get(event.kind, "black"), width=1)
        last = steps[-1]
        text = f"t={last.t:.1f}s  " + ("progress n/a" if last.smoothed is None else
                                       f"{last.smoothed:.0%} [{last.low:.0%}-{last.high:.0%}]")  # fmt: skip
        recent = [e for e in events if last.t - e.t <= 2.0]
        draw.text((left, top + 5), text, fill="black")
        if recent:
            draw.text((left + 200, top + 5), _event_label(recent[-1]), fill=EVENT_COLOURS.get(recent[-1].kind, "black"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---- the command --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from progresslm.backends.base import BackendError
    from progresslm.backends.registry import UnknownBackendError, backend_class
    from progresslm.online.monitor import MonitorError
    from progresslm.online.scorer import ScorerError

    try:
        backend_class(args.backend)
        _check_args(args)
        demo, demo_kind = demo_items(args)
        source = open_source(Path(args.source), args.fps, args.every, args.on_bad_frame)
    except (UnknownBackendError, WatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / "watch" / (_slug(source.path.stem) or "source"))
    try:
        return _watch(args, source, demo, demo_kind, out)
    except (WatchError, MonitorError, ScorerError) as err:
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


def _watch(args: argparse.Namespace, source: Source, demo: list, demo_kind: str, out: Path) -> int:
    from tqdm.auto import tqdm

    from progresslm import __version__
    from progresslm.online.monitor import ProgressMonitor
    from progresslm.online.scorer import ProgressScorer

    options = backend_options(args)
    out.mkdir(parents=True, exist_ok=True)
    with ProgressScorer(args.goal, demo, backend=args.backend, options=options, mode=args.mode,
                        demo_kind=demo_kind) as scorer:  # fmt: skip
        monitor = ProgressMonitor(
            scorer,
            samples=args.samples,
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
            "batch": args.batch, "goal": args.goal, "demo": demo, "demo_kind": demo_kind,
            "backend": args.backend, "model": scorer.backend.model_name, "mode": args.mode,
            "options": dataclasses.asdict(options), "monitor": monitor.settings(),
        }  # fmt: skip
        overlay = Overlay(out / "overlay.mp4", source.rate, source.duration_s) if args.video else None
        sources: list[str] = []
        bar = tqdm(total=source.count, desc=f"watch {args.backend}", unit="frame", disable=args.quiet)
        try:
            for batch in _batches(source.frames, args.batch):
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
