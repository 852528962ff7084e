"""Video decoding for episode sources, through PyAV: the frames of one time window, optionally thinned to a rate and
resized, each with its timestamp. LeRobot v3.0 packs many episodes into one file, so a window seeks first."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np


class VideoError(ValueError):
    """A video that cannot be opened or decoded: says which file and why."""


def _require_av():
    try:
        import av  # lazy: PyAV (the [data] extra)
    except ImportError:
        raise VideoError("reading videos needs PyAV: pip install -e '.[data]' (in the progresslm clone)") from None
    return av


def probe(path: Path) -> tuple[float, float | None, int, int]:
    """(frames per second, duration in seconds or None, width, height) of the first video stream."""
    av = _require_av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            return rate, duration, stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, IndexError, OSError) as err:
        raise VideoError(f"{path}: not a readable video ({type(err).__name__}: {err})") from None


def count_frames(path: Path) -> tuple[float, int, float]:
    """(fps, frame count, first frame time) of a video, counting packets (no decoding)."""
    av = _require_av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            times = [p.pts for p in container.demux(stream) if p.pts is not None]
            start = float(min(times) * stream.time_base) if times else 0.0
    except (av.FFmpegError, IndexError, OSError) as err:
        raise VideoError(f"{path}: not a readable video ({type(err).__name__}: {err})") from None
    if not times or fps <= 0:
        raise VideoError(f"{path}: no frames, or no frame rate stated")
    return fps, len(times), start


def decode(
    path: Path, start: float = 0.0, end: float | None = None, times: list[float] | None = None, size: int | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp in seconds, H x W x 3 uint8 RGB) for the frames with start <= t < end (end None: to the end of the
    file). With `times`, only the decoded frame nearest each wanted time (in order; a frame may serve twice). With
    `size`, frames are scaled so that their shorter side is `size` pixels."""
    av = _require_av()
    wanted = sorted(times) if times is not None else None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: not a readable video ({type(err).__name__}: {err})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = wanted[0] if wanted else start
        if first > 0:
            container.seek(int(max(first - 0.5, 0) / stream.time_base), stream=stream, backward=True, any_frame=False)
        limit = (wanted[-1] + 1.0) if wanted else end
        previous: tuple[float, object] | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t < start - 1e-6 and wanted is None:
                    continue
                if limit is not None and t >= limit - 1e-6 and wanted is None:
                    return
                if wanted is None:
                    yield t, _rgb(frame, size)
                    continue
                # nearest decoded frame to each wanted time: decide once the next frame is past the wanted time
                while wanted and t >= wanted[0]:
                    chosen = frame if previous is None or abs(t - wanted[0]) <= abs(previous[0] - wanted[0]) else previous[1]
                    chosen_t = t if chosen is frame else previous[0]
                    yield chosen_t, _rgb(chosen, size)
                    wanted.pop(0)
                if not wanted:
                    return
                previous = (t, frame)
                if limit is not None and t > limit:
                    break
        except av.FFmpegError as err:
            raise VideoError(f"{path}: decoding failed near {previous[0] if previous else start:.2f} s ({err})") from None
        if wanted and previous is not None:  # wanted times past the last frame get the last frame
            for _ in wanted:
                yield previous[0], _rgb(previous[1], size)


def _rgb(frame, size: int | None) -> np.ndarray:
    if size:
        scale = size / min(frame.width, frame.height)
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        frame = frame.reformat(width=width, height=height, format="rgb24")
        return frame.to_ndarray()
    return frame.to_ndarray(format="rgb24")


def write_video(path: Path, frames: list[np.ndarray], fps: float, codec: str = "libx264") -> Path:
    """Encode RGB frames (all one size, even sides) to `path`: for test fixtures and the simulator round trip.
    codec "libx264" (H.264) or "libsvtav1" (AV1), pixel format yuv420p."""
    av = _require_av()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast", "g": str(max(1, math.ceil(fps)))}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
