"""What every benchmark builder shares (`sim build`, `data build`, a new simulator family): stable seeds, the frames
sampled between key frames, the anchors of a progress value, and the row of the authors' format for one sample."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from progresslm.bench.format import sample_to_record
from progresslm.types import Demo, Modality, Sample, View


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (a unit's seeds do not depend on build order)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sample_frames(key_frames: list[int], per_interval: int) -> list[int]:
    """The key frames plus `per_interval` evenly spaced frames inside each interval.

    >>> sample_frames([0, 10, 16], 2)
    [0, 3, 7, 10, 12, 14, 16]
    """
    frames = set(key_frames)
    for a, b in zip(key_frames, key_frames[1:]):
        for i in range(1, per_interval + 1):
            frames.add(int(round(a + (b - a) * i / (per_interval + 1))))
    return sorted(frames)


def anchors(progress: float, total_steps: int) -> tuple[int, int, float]:
    """(visual closest_idx over T+1 keyframes, text closest_idx over T steps, delta from the visual anchor).

    >>> anchors(0.45, 4)
    (3, 2, -0.05)
    """
    nearest = int(round(progress * total_steps))
    return nearest + 1, max(nearest, 1), round(progress - nearest / total_steps, 6)


def labelled_row(trajectory: str, goal: str, demo: Sequence[str], total_steps: int, observation: str,
                 progress: float | None, *, text: bool = False, data_source: str, demo_camera: str | None = None,
                 observation_camera: str | None = None, extra: dict | None = None) -> dict:
    """One row of the authors' format (`bench.format.sample_to_record`): a visual (or `text`) demonstration, the
    observation, and its labels from `progress` (anchors from `anchors`), or n/a labels when `progress` is None.
    Cameras given for both sides make it a cross-view row (`camera_combination` "demo+observation")."""
    closest = delta = None
    if progress is not None:
        visual, steps, delta = anchors(progress, total_steps)
        closest = steps if text else visual
    cross = demo_camera is not None and observation_camera is not None
    sample = Sample(
        uid="", trajectory_id=trajectory, goal=goal,
        demo=Demo(Modality.TEXT if text else Modality.VISUAL, tuple(demo), total_steps),
        observation=observation, progress=progress, closest_idx=closest, delta=delta,
        view=View.CROSS if cross else View.SAME, demo_camera=demo_camera, observation_camera=observation_camera,
        data_source=data_source, extra=dict(extra or {}),
    )  # fmt: skip
    return sample_to_record(sample)
