"""The data contracts shared by every stage: demonstrations, samples and predictions.

Progress values are fractions in [0, 1] everywhere inside the toolkit; percentages appear only at
the edges (the authors' JSONL files, prompts, reports).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Modality(str, Enum):
    VISUAL = "visual"
    TEXT = "text"


class View(str, Enum):
    SAME = "same_view"
    CROSS = "cross_view"


class Status(str, Enum):
    """The three outcomes of reading a model reply; kept apart in every metric."""

    VALUE = "value"
    NA = "na"
    PARSE_FAILURE = "parse_failure"


# Split names, in report order. Answerable splits first.
ANSWERABLE_SPLITS = ("visual_same_view", "visual_cross_view", "text")
UNANSWERABLE_SPLITS = ("visual_unanswerable", "text_unanswerable")
SPLITS = ANSWERABLE_SPLITS + UNANSWERABLE_SPLITS

# Robot frames are named `<camera>_<frame:04d>.jpg`, edited observations add `_edit`.
_CAMERA_FILE = re.compile(r"^(?P<camera>.+?)_(?P<frame>\d+)(?:_edit)?\.[A-Za-z0-9]+$")


def camera_of(file_name: str) -> str | None:
    """Camera name encoded in a robot frame's file name, or None when the name has none.

    >>> camera_of("camera_top_0016.jpg"), camera_of("camera_front_0223_edit.jpg"), camera_of("0.jpg")
    ('camera_top', 'camera_front', None)
    """
    match = _CAMERA_FILE.match(Path(file_name).name)
    return match.group("camera") if match else None


@dataclass(frozen=True)
class Demo:
    """A demonstration: T+1 keyframe images (visual) or T step descriptions (text).

    `total_steps` is T as the record states it; `items` are image file names or step texts.
    """

    modality: Modality
    items: tuple[str, ...]
    total_steps: int

    @property
    def expected_length(self) -> int:
        return self.total_steps + 1 if self.modality is Modality.VISUAL else self.total_steps

    def progress_at(self, index: int) -> float:
        """Progress in [0, 1] at the end of item `index` (0-based).

        Keyframe i stands at i/T; text step i (0-based) ends at (i+1)/T (docs/protocol.md §1).
        """
        step = index if self.modality is Modality.VISUAL else index + 1
        return step / max(self.total_steps, 1)

    def progress_points(self) -> list[float]:
        return [self.progress_at(i) for i in range(len(self.items))]


@dataclass
class Sample:
    """One observation to place on a demonstration's timeline, with its labels and axes."""

    uid: str
    trajectory_id: str
    goal: str
    demo: Demo
    observation: str
    progress: float | None  # ground truth in [0, 1]; None when unanswerable
    closest_idx: int | None  # 1-based anchor; None when unanswerable
    delta: float | None = None  # signed offset from the anchor, fraction
    view: View = View.SAME
    demo_camera: str | None = None
    observation_camera: str | None = None
    data_source: str | None = None
    # False when the record has no label fields at all (absent, not "n/a"): such a row can be
    # asked about but neither scored nor trained on, and is never mistaken for an unanswerable one.
    labelled: bool = True
    # Anything the record held beyond the contract, and how its fields were spelled, so that
    # writing a sample back gives the record it came from.
    extra: dict = field(default_factory=dict)
    spelling: dict = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        return self.progress is not None

    @property
    def modality(self) -> Modality:
        return self.demo.modality

    @property
    def split(self) -> str:
        """One of SPLITS."""
        if not self.answerable:
            return f"{self.modality.value}_unanswerable"
        if self.modality is Modality.TEXT:
            return "text"
        return f"visual_{self.view.value}"

    def image_names(self) -> list[str]:
        """Image file names this sample needs, demo keyframes first, observation last."""
        names = list(self.demo.items) if self.modality is Modality.VISUAL else []
        return names + [self.observation]

    def image_path(self, name: str, image_root: str | Path | None) -> Path:
        """Where an image file of this sample lives: `IMAGE_ROOT/<id>/<name>`, absolute names as they are."""
        path = Path(name)
        if path.is_absolute() or image_root is None:
            return path
        return Path(image_root) / self.trajectory_id / name


@dataclass(frozen=True)
class Prediction:
    """A parsed model reply. `score` is set only when `status` is VALUE, `ref` only when `ref_status` is."""

    status: Status
    score: float | None = None
    ref_status: Status | None = None  # None when the reply format has no anchor (direct mode)
    ref: int | None = None
    raw: str = ""

    @property
    def has_value(self) -> bool:
        return self.status is Status.VALUE


def task_of(sample: Sample) -> str:
    """The task a sample shows: the simulator's task name, else the second part of `sim/<task>/...` trajectory ids
    (the first part of an id without a slash)."""
    sim = sample.extra.get("sim") or {}
    return str(sim.get("task") or sample.trajectory_id.split("/")[1 if "/" in sample.trajectory_id else 0])


def is_number(value: object) -> bool:
    """A finite real number (numpy scalars included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
