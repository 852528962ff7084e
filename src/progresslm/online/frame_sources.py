"""Where the frames `progresslm watch` scores come from: a folder of images (natural name order, timestamps from a
frame rate) or a video (sampled at a rate, decoded by imageio's ffmpeg), each frame with its time; unreadable or
degenerate frames are skipped and named, or stop the run, as the caller chooses."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from progresslm import images
from progresslm.images import IMAGE_SUFFIXES, ImageReadError, list_images

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A frame source (or a frame in it) that cannot be read: says what and where."""


VIDEO_FPS = 2.0  # default sampling rate of a video: a VLM call per frame makes 30 frames/s too slow

DIR_FPS = 1.0  # default rate at which a folder's frames were taken, for their timestamps

def image_files(folder: Path, what: str) -> list[Path]:
    """The image files of `folder`, in natural name order; an error when there are none."""
    if not folder.is_dir():
        raise SourceError(f"{what}: {folder} is not a folder")
    files = list_images(folder)
    if not files:
        raise SourceError(f"{what}: {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files

def read_frame(path: Path):
    """One frame file as an H x W x 3 array (`images.read_frame`); a frame that cannot be used is a SourceError."""
    try:
        return images.read_frame(path)
    except ImageReadError as err:
        raise SourceError(str(err)) from None

def _folder_frames(files: list[Path], chosen: list[int], rate: float, on_bad: str, skipped: list[str]):
    """The chosen files as Frames; an unreadable or degenerate one is skipped with a warning naming it (or,
    with on_bad="fail", stops the run with that message)."""
    for i in chosen:
        try:
            image = read_frame(files[i])
        except SourceError as err:
            if on_bad == "fail":
                raise
            log.warning("skipping %s", err)
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
    camera: str | None = None  # an episode's camera watched (its name, not an alias given for it)

def open_source(path: Path, fps: float | None, every: int, on_bad: str = "skip") -> Source:
    """The frames to score from a folder of images or a video, with their timestamps."""
    if not path.exists():
        raise SourceError(f"source: {path} does not exist; give a video file or a folder of frames")
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
        import imageio.v3 as iio  # lazy: imageio (the [online] extra)
    except ImportError:
        raise SourceError("reading a video needs imageio and imageio-ffmpeg: pip install -e '.[online]' (in the progresslm clone)") from None
    try:
        meta = iio.immeta(path)
    except Exception as err:  # imageio raises OSError, ValueError or its own types for unreadable files
        raise SourceError(f"source: cannot read {path} as a video ({type(err).__name__}: {ffmpeg_reason(err)})") from None
    native = float(meta.get("fps") or 0.0)
    if not math.isfinite(native) or native <= 0:
        raise SourceError(f"source: {path} states no frame rate; extract its frames to a folder and pass --fps")
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
            raise SourceError(f"source: {path} could not be decoded past frame {max(sampled, 0)} "
                             f"({ffmpeg_reason(err)})") from None

    return Source("video", path, frames(), count, rate / every, duration, native)


def clip(source: Source, start: float | None, end: float | None) -> Source:
    """The source's frames with start <= t <= end (seconds from its first frame); timestamps are kept."""
    if start is None and end is None:
        return source
    low, high = start or 0.0, math.inf if end is None else end

    def frames() -> Iterator[Frame]:
        for frame in source.frames:
            if frame.t > high + 1e-9:
                return
            if frame.t >= low - 1e-9:
                yield frame

    span = None if source.duration_s is None else max(0.0, min(high, source.duration_s) - low)
    count = None if source.count is None or span is None else min(source.count, math.floor(span * source.rate) + 1)
    return dataclasses.replace(source, frames=frames(), count=count, duration_s=span)


def episode_source(episode, camera: str | None, fps: float | None, every: int, start: float | None = None,
                   end: float | None = None, chunk: int = 16) -> Source:
    """The frames of one recorded episode (`progresslm.data.episodes.Episode`) sampled at `fps` (at most its own
    rate; default VIDEO_FPS) inside [start, end] seconds, read `chunk` at a time."""
    camera = camera or episode.cameras[0]
    if camera not in episode.cameras:
        raise SourceError(f"--camera: episode {episode.id} has no camera {camera!r} (it has {', '.join(episode.cameras)})")
    camera = episode.cameras.resolve(camera) if hasattr(episode.cameras, "resolve") else camera
    window = episode.window(start, end)
    if not window:
        raise SourceError(f"--start/--end: episode {episode.id} ({episode.duration:.1f} s) has no frame in that window")
    rate = min(fps or VIDEO_FPS, episode.fps)
    chosen = sample_indices(window, episode.fps, rate, every)

    def frames() -> Iterator[Frame]:
        for i in range(0, len(chosen), chunk):
            part = chosen[i:i + chunk]
            for index, image in zip(part, episode.read(camera, part)):
                yield Frame(f"frame {index}", episode.time(index), image)

    duration = episode.time(window.stop - 1) - episode.time(window.start)
    return Source("episode", Path(f"{episode.source}:{episode.id}"), frames(), len(chosen), rate / every, duration,
                  episode.fps, camera=camera)


def sample_indices(window: range, fps: float, rate: float, every: int) -> list[int]:
    """Frame indices of `window` (frames at `fps`) sampled at `rate` per second, every `every`th of those kept, and
    the window's last frame always: an episode is watched to its end, where a task is done or not (at 20 frames/s
    sampled at 2, frames 0, 10, ..., 60 of a 70-frame episode stopped 0.45 s early).

    >>> sample_indices(range(70), 20.0, 2.0, 1)[-3:], sample_indices(range(70), 20.0, 2.0, 3)
    ([50, 60, 69], [0, 30, 60, 69])
    >>> sample_indices(range(5, 6), 20.0, 2.0, 1), sample_indices(range(61), 20.0, 2.0, 1)[-2:]
    ([5], [50, 60])
    """
    stride = fps / rate
    chosen = sorted({window.start + int(round(k * stride)) for k in range(math.ceil(len(window) / stride))
                     if window.start + int(round(k * stride)) < window.stop})[::every]  # fmt: skip
    if chosen[-1] != window.stop - 1:
        chosen.append(window.stop - 1)
    return chosen
