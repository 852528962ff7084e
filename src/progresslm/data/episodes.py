"""One interface over users' robot data: a source yields Episodes (task text, cameras, frame rate, length, optional
key-step annotations and per-frame columns) whose frames are read on demand, by frame index, for one camera.
`data.sources.open_episodes` opens a source by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from progresslm.images import ImageReadError, check_frame

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class EpisodeSourceError(ValueError):
    """A source that cannot be read (missing files, wrong layout, unknown episode): says what and where."""


WRIST_MARKS = ("eye_in_hand", "wrist", "gripper")  # camera names that are on the robot's hand


def is_wrist(camera: str) -> bool:
    """Whether a camera is mounted on the robot's hand (robomimic's robot0_eye_in_hand, a "wrist" camera).

    >>> is_wrist("robot0_eye_in_hand_image"), is_wrist("agentview"), is_wrist("left_wrist")
    (True, False, True)
    """
    return any(mark in camera.lower() for mark in WRIST_MARKS)


def scene_first(cameras: Sequence[str]) -> list[str]:
    """The cameras an observation is drawn from by default: the third-person (scene) ones, or all when every one
    is on the robot's hand; a wrist view shows the gripper, not the task's progress.

    >>> scene_first(["hand_wrist", "scene", "top"]), scene_first(["left_wrist", "right_wrist"])
    (['scene', 'top'], ['left_wrist', 'right_wrist'])
    """
    scene = [c for c in cameras if not is_wrist(c)]
    return scene or list(cameras)


def text_name(name: str) -> str:
    """A file or folder name as text that can be written as UTF-8: a name that is not valid UTF-8 (Python holds its
    bytes as surrogates, e.g. a Latin-1 'caf\\xe9') shows those bytes as \\xNN, so it stays apart from other
    names and every JSON or Markdown file that names it can be written.

    >>> text_name("pick_cup"), text_name("caf\\udce9_cup"), text_name("抽屉")
    ('pick_cup', 'caf\\\\xe9_cup', '抽屉')
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class KeyStep:
    """One annotated step of an episode: it ends `end` seconds after the episode's first frame."""

    end: float
    text: str | None = None


class Cameras(tuple):
    """An episode's camera names in order of preference (the first is the default view), which also accepts other
    names for them: `aliases` maps a name a user may give to one of the names (robomimic's observation key
    `agentview_image` -> its camera `agentview`), and `keys` each name to where the source stores it. `in` and
    `Episode.read` accept either; equality and iteration see the names only.

    >>> cams = Cameras(["agentview", "robot0_eye_in_hand"], {"agentview_image": "agentview"})
    >>> "agentview_image" in cams, cams.resolve("agentview_image"), cams == ("agentview", "robot0_eye_in_hand")
    (True, 'agentview', True)
    """

    def __new__(cls, names, aliases: dict[str, str] | None = None, keys: dict[str, str] | None = None):
        made = super().__new__(cls, names)
        made.aliases, made.keys = dict(aliases or {}), dict(keys or {})
        return made

    def __contains__(self, name: object) -> bool:
        return tuple.__contains__(self, name) or name in self.aliases

    def __reduce__(self):  # pickled for worker processes and Ray tasks with its aliases
        return (Cameras, (tuple(self), self.aliases, self.keys))

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def key(self, name: str) -> str:
        return self.keys.get(self.resolve(name), self.resolve(name))


@dataclass
class Episode:
    """One recorded episode. Frames are numbered 0..length-1 at `fps`; `read(camera, indices)` returns them as
    H x W x 3 uint8 RGB arrays in the order asked."""

    source: str  # the source's kind ("lerobot", "videos", "frames", "hdf5")
    id: str  # unique within the source, usable in file names ("episode_000003", "pick_cup/ep07")
    index: int  # position in the source (what --episodes selects)
    task: str  # the task text
    cameras: tuple[str, ...]
    fps: float
    length: int  # frames
    reader: Callable[[str, Sequence[int]], list[np.ndarray]] = field(repr=False, compare=False)
    keysteps: list[KeyStep] | None = None  # annotated step ends, when the source has them
    columns: dict[str, list] = field(default_factory=dict, repr=False)  # per-frame annotation columns by name
    # The task's key steps when the episode reached only `keysteps` of them (a stall, a failure; a sidecar's
    # `total_steps`): its progress holds at len(keysteps) / total_steps after the last one. None: all of them.
    total_steps: int | None = None

    def read(self, camera: str, indices: Sequence[int]) -> list[np.ndarray]:
        if isinstance(self.cameras, Cameras):
            camera = self.cameras.resolve(camera)
        if camera not in self.cameras:
            raise EpisodeSourceError(f"episode {self.id}: no camera {camera!r} (cameras: {', '.join(self.cameras)})")
        bad = [i for i in indices if not 0 <= i < self.length]
        if bad:
            raise EpisodeSourceError(f"episode {self.id}: frame {bad[0]} outside 0..{self.length - 1}")
        frames = self.reader(camera, list(indices))
        try:  # images.MIN_SIDE: the one policy for tiny frames, whatever the reader
            for index, pixels in zip(indices, frames):
                check_frame(pixels, f"episode {self.id} camera {camera} frame {index}")
        except ImageReadError as err:
            raise EpisodeSourceError(str(err)) from None
        return frames

    def time(self, index: int) -> float:
        """Seconds from the episode's first frame."""
        return index / self.fps

    @property
    def duration(self) -> float:
        return (self.length - 1) / self.fps if self.length > 1 else 0.0

    def window(self, start: float | None = None, end: float | None = None) -> range:
        """Frame indices with start <= t <= end (seconds from the episode's first frame)."""
        first = 0 if start is None else max(0, int(np.ceil(start * self.fps - 1e-6)))
        last = self.length - 1 if end is None else min(self.length - 1, int(np.floor(end * self.fps + 1e-6)))
        return range(first, last + 1)


MAX_FPS = 10_000.0  # above any camera's rate: a larger figure is a unit mistake (frames per minute, a timestamp)
MIN_FPS = 1e-3  # a frame every ~17 minutes; far smaller rates (5e-324) put frame 1 at an infinite time


def check_fps(value: object, where: str) -> float:
    """A frame rate as it enters (an info.json, a sidecar, --fps): a finite number of frames per second from MIN_FPS
    to MAX_FPS, else an EpisodeSourceError "<where> is <value>, ...". NaN, infinite, zero, negative and vanishing
    rates would place frames at NaN or infinite times (written as NaN / Infinity, which strict JSON readers refuse).

    >>> check_fps(30, "fps"), check_fps(12.5, "fps")
    (30.0, 12.5)
    >>> check_fps(float("nan"), "meta/info.json: fps")
    Traceback (most recent call last):
    ...
    progresslm.data.episodes.EpisodeSourceError: meta/info.json: fps is nan, not a frame rate (a number of frames per second from 0.001 to 10000)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not MIN_FPS <= value <= MAX_FPS:  # fmt: skip
        raise EpisodeSourceError(f"{where} is {value!r}, not a frame rate (a number of frames per second from "
                                 f"{MIN_FPS:g} to {MAX_FPS:g})")
    return float(value)


def parse_keysteps(steps, where: Path | str) -> list[KeyStep]:
    """Key steps from a list of {"end": seconds, "text": ...}; ends must rise from 0."""
    if not isinstance(steps, list) or not steps:
        raise EpisodeSourceError(f"{where}: steps must be a non-empty list of {{'end': seconds, 'text': ...}}")
    out = []
    for i, step in enumerate(steps):
        try:
            end = float(step["end"])
        except (TypeError, KeyError, ValueError):
            raise EpisodeSourceError(f"{where}: step {i + 1} has no number 'end' (seconds from the first frame)") from None
        if not math.isfinite(end) or end < 0 or (out and end <= out[-1].end):
            raise EpisodeSourceError(f"{where}: step {i + 1} ends at {step['end']}; ends must rise from 0")
        text = step.get("text")
        out.append(KeyStep(end, None if text in (None, "") else str(text)))
    return out


def kind_is_hub_id(text: str) -> bool:
    """Whether `text` looks like a Hub dataset id (`owner/name`) rather than a local path.

    >>> kind_is_hub_id("lerobot/pusht"), kind_is_hub_id("./data/x"), kind_is_hub_id("/abs/x"), kind_is_hub_id("a/b/c")
    (True, False, False, False)
    """
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~", "/"))
