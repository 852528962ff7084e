"""Extra training samples that make a model use the demonstration.

A model trained only on (demonstration, observation) pairs of one task can learn "this image of
this task means this much progress" and ignore the demonstration. Two kinds of extra samples
give the same observation another answer when the demonstration changes:

- **demo cuts**: the demonstration cut after step m defines a shorter task, so an observation
  inside the first m steps gets a new anchor and a rescaled score (progress p of T steps becomes
  p * T / m of m steps; key steps end at evenly spaced progress, so the labels stay exact);
- **swapped demos**: the goal and demonstration of another task, labelled N/A (the same pairing
  `progresslm eval --swap-demos` uses to check a model);
- **self demos**: a visual sample whose demonstration is the observation's own episode (its key
  frames, same camera, taken from the other samples of that trajectory), so the observation matches
  a keyframe almost exactly. It is the easy case of "find the keyframe that looks like this", which
  a small model trained from scratch learns before it can match keyframes of another episode.

Both are drawn from a seed and a sample's uid, so a dataset does not depend on sample order.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

from progresslm.demo_swap import swapped_samples
from progresslm.types import Demo, Modality, Sample, View

CUT_SUFFIX = "#cut"
SELF_SUFFIX = "#self"
KEYFRAME_TOLERANCE = 0.002  # labels are written with a few decimals ("33.3%")


def cut_demo(sample: Sample, steps: int) -> Sample:
    """`sample` against its demonstration cut after step `steps` (1 <= steps < T).

    The observation must lie inside the shorter task (progress <= steps / T).

    >>> demo = Demo(Modality.VISUAL, ("k0", "k1", "k2", "k3", "k4"), total_steps=4)
    >>> s = cut_demo(Sample("u", "t", "g", demo, "o", progress=0.375, closest_idx=3), 2)
    >>> s.demo.items, s.demo.total_steps, s.progress, s.closest_idx, s.delta
    (('k0', 'k1', 'k2'), 2, 0.75, 3, -0.25)
    """
    demo, total = sample.demo, sample.demo.total_steps
    if not sample.answerable:
        raise ValueError(f"sample {sample.uid}: only an answerable sample can be cut")
    if not 1 <= steps < total:
        raise ValueError(f"sample {sample.uid}: cut after step {steps} of {total}; need 1 <= steps < {total}")
    if sample.progress > steps / total + 1e-9:
        raise ValueError(f"sample {sample.uid}: progress {sample.progress:.3f} lies beyond step {steps} of {total}")
    progress = min(sample.progress * total / steps, 1.0)
    nearest = int(round(progress * steps))
    if demo.modality is Modality.VISUAL:
        items, closest = demo.items[: steps + 1], nearest + 1
    else:
        items, closest = demo.items[:steps], max(nearest, 1)
    return dataclasses.replace(
        sample,
        uid=f"{sample.uid}{CUT_SUFFIX}{steps}",
        demo=Demo(modality=demo.modality, items=tuple(items), total_steps=steps),
        progress=round(progress, 6),
        closest_idx=closest,
        delta=round(progress - nearest / steps, 6),
        extra={**sample.extra, "cut_from": sample.uid, "cut_after_step": steps},
    )


def demo_cuts(samples: Sequence[Sample], rate: float, seed: int = 0) -> list[Sample]:
    """About `rate` cut copies per answerable sample (rate 0.5: every other sample on average,
    rate 2: two), each cut after a step drawn among those that keep the observation inside."""
    out = []
    for sample in samples:
        total = sample.demo.total_steps
        if not sample.answerable or total < 2:
            continue
        rng = random.Random(f"{seed}:cut:{sample.uid}")
        copies = int(rate) + (rng.random() < rate - int(rate))
        choices = [m for m in range(1, total) if sample.progress <= m / total + 1e-9]
        for m in rng.sample(choices, k=min(copies, len(choices))):
            out.append(cut_demo(sample, m))
    return out


def swap_negatives(
    samples: Sequence[Sample], rate: float, image_root: str | Path | None, seed: int = 0
) -> list[Sample]:
    """About `rate` N/A samples per answerable sample: the observation with another task's goal
    and demonstration (`progresslm.demo_swap.swapped_samples`, drawn with its own seed)."""
    if rate <= 0:
        return []
    keep = [s for s in samples if random.Random(f"{seed}:swap:{s.uid}").random() < rate]
    return swapped_samples(keep, image_root, seed=seed)


def own_keyframes(samples: Sequence[Sample]) -> dict[tuple[str, str], dict[float, str]]:
    """(trajectory, observation camera) -> {progress: observation image} over answerable visual samples."""
    frames: dict[tuple[str, str], dict[float, str]] = {}
    for s in samples:
        if s.answerable and s.modality is Modality.VISUAL and s.observation_camera:
            frames.setdefault((s.trajectory_id, s.observation_camera), {})[s.progress] = s.observation
    return frames


def self_demo(sample: Sample, frames: dict[float, str]) -> Sample | None:
    """`sample` with its demonstration replaced by the key frames of its own observation episode
    (progress k/T for k = 0..T, found in `frames`); None when one of them is missing.

    >>> demo = Demo(Modality.VISUAL, ("d0", "d1", "d2"), total_steps=2)
    >>> s = Sample("u", "t", "g", demo, "o3", progress=0.6, closest_idx=2, observation_camera="c")
    >>> self_demo(s, {0.0: "o0", 0.25: "o1", 0.5: "o2", 0.6: "o3", 1.0: "o4"}).demo.items
    ('o0', 'o2', 'o4')
    >>> self_demo(s, {0.0: "o0", 0.6: "o3", 1.0: "o4"}) is None
    True
    """
    total = sample.demo.total_steps
    items = []
    for k in range(total + 1):
        nearest = min(frames, key=lambda p: abs(p - k / total), default=None)
        if nearest is None or abs(nearest - k / total) > KEYFRAME_TOLERANCE:
            return None
        items.append(frames[nearest])
    return dataclasses.replace(
        sample,
        uid=f"{sample.uid}{SELF_SUFFIX}",
        demo=Demo(modality=Modality.VISUAL, items=tuple(items), total_steps=total),
        demo_camera=sample.observation_camera,
        extra={**sample.extra, "self_demo_of": sample.uid},
    )


def self_demos(samples: Sequence[Sample], rate: float, seed: int = 0) -> list[Sample]:
    """About `rate` self-demo copies (0 or 1 each) of the answerable same-view visual samples."""
    if rate <= 0:
        return []
    frames = own_keyframes(samples)
    out = []
    for s in samples:
        if not s.answerable or s.modality is not Modality.VISUAL or s.view is not View.SAME:
            continue
        if random.Random(f"{seed}:self:{s.uid}").random() >= rate:
            continue
        copy = self_demo(s, frames.get((s.trajectory_id, s.observation_camera or ""), {}))
        if copy is not None:
            out.append(copy)
    return out


def augment(
    samples: Sequence[Sample],
    image_root: str | Path | None,
    cuts: float = 0.0,
    swaps: float = 0.0,
    seed: int = 0,
    selfs: float = 0.0,
) -> list[Sample]:
    """`samples`, their self-demo copies, demo cuts of both, and swapped-demo negatives of `samples`."""
    if cuts < 0 or swaps < 0 or selfs < 0:
        raise ValueError(
            f"augmentation rates must be >= 0, got demo_cuts={cuts}, swap_negatives={swaps}, self_demos={selfs}"
        )
    base = [*samples, *self_demos(samples, selfs, seed)]
    return [*base, *demo_cuts(base, cuts, seed), *swap_negatives(samples, swaps, image_root, seed)]
