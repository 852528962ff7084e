"""The demo-dependence check: does a model's answer depend on the demonstration?

Each answerable observation is paired with the demonstration (and goal) of another task. A model
that compares the observation with the demonstration answers N/A or changes its answer; a model
that learned "this image means this much progress" answers as before. `--swap-demos` reports the
share of changed answers beside the metrics.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

from progresslm.types import Demo, Modality, Prediction, Sample, Status

SWAP_SUFFIX = "#swap"
CHANGE_THRESHOLD = 0.05  # a score that moves by less than 5 points counts as unchanged


def swapped_samples(samples: Sequence[Sample], image_root: str | Path | None, seed: int = 0) -> list[Sample]:
    """For each answerable sample, a copy whose goal and demonstration come from another task.

    "Another task" means another trajectory with another goal and the same demo modality. Demo
    images are given as resolved paths, since they live under the other trajectory's folder.
    Samples for which no other task exists are left out.
    """
    rng = random.Random(seed)
    root = None if image_root is None else Path(image_root).resolve()  # absolute: a relative one would be joined twice
    donors: dict[Modality, list[Sample]] = {}
    seen: set[tuple[Modality, str, str]] = set()
    for sample in samples:
        key = (sample.modality, sample.trajectory_id, sample.goal)
        if sample.answerable and key not in seen:
            seen.add(key)
            donors.setdefault(sample.modality, []).append(sample)
    swapped = []
    for sample in samples:
        if not sample.answerable:
            continue
        candidates = [d for d in donors.get(sample.modality, []) if d.goal != sample.goal]
        if not candidates:
            continue
        donor = rng.choice(candidates)
        items = donor.demo.items
        if donor.modality is Modality.VISUAL:
            items = tuple(str(donor.image_path(name, root)) for name in items)
        swapped.append(dataclasses.replace(
            sample,
            uid=sample.uid + SWAP_SUFFIX,
            goal=donor.goal,
            demo=Demo(modality=donor.modality, items=items, total_steps=donor.demo.total_steps),
            progress=None,  # no right answer exists: the demonstration is of another task
            closest_idx=None,
            delta=None,
            extra={**sample.extra, "swapped_from": donor.uid},
        ))  # fmt: skip
    return swapped


def answer_changed(original: Prediction, swapped: Prediction, threshold: float = CHANGE_THRESHOLD) -> bool:
    """True when the swapped demonstration moved the answer: N/A, a failure, or a score that moved.

    >>> from progresslm.types import Status
    >>> v = lambda s: Prediction(Status.VALUE, s)
    >>> answer_changed(v(0.5), v(0.52)), answer_changed(v(0.5), v(0.7)), answer_changed(v(0.5), Prediction(Status.NA))
    (False, True, True)
    """
    if original.status is not Status.VALUE or swapped.status is not Status.VALUE:
        return original.status is not swapped.status
    return abs(original.score - swapped.score) >= threshold


def swap_report(pairs: list[tuple[Sample, Prediction, Prediction]], threshold: float = CHANGE_THRESHOLD) -> dict:
    """Shares (percent) of answers changed and of N/A under swapped demonstrations, per split and in all."""
    groups: dict[str, list[tuple[Prediction, Prediction]]] = {}
    for sample, original, swapped in pairs:
        groups.setdefault(sample.split, []).append((original, swapped))
        groups.setdefault("all", []).append((original, swapped))
    report = {}
    for name, items in groups.items():
        n = len(items)
        report[name] = {
            "n": n,
            "changed": round(100.0 * sum(answer_changed(o, s, threshold) for o, s in items) / n, 2),
            "na": round(100.0 * sum(s.status is Status.NA for _, s in items) / n, 2),
            "mean_abs_shift": _mean_shift(items),
        }
    return report


def _mean_shift(items: list[tuple[Prediction, Prediction]]) -> float | None:
    shifts = [abs(o.score - s.score) * 100 for o, s in items if o.has_value and s.has_value]
    return round(sum(shifts) / len(shifts), 2) if shifts else None
