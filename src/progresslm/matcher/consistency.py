"""Keyframe consistency: a matcher shown one of the demonstration's own keyframes as the observation must read
that keyframe's progress (issue 27: within 5 points, first and last keyframe included).

    from progresslm.matcher.consistency import keyframe_consistency
    keyframe_consistency(MatcherRunner(folder), samples, image_root)   # {"n", "within", "first", "last", ...}

Every distinct visual demonstration of `samples` is asked once per keyframe, the keyframe's own image file as
the observation (`augment`: a photometric and geometric copy of it instead, `matcher.augmentation`, seeded),
and the answer is compared with the keyframe's progress. N/A counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from progresslm.images import read_image
from progresslm.matcher.augmentation import augment_image
from progresslm.types import Modality, Sample

TOLERANCE = 0.05  # 5 points


def distinct_demos(samples: Sequence[Sample], image_root) -> list[tuple[list[Path], list[float]]]:
    """(keyframe files, progress points) of each distinct visual demonstration, in first-seen order."""
    seen, out = set(), []
    for sample in samples:
        demo = sample.demo
        if demo.modality is not Modality.VISUAL:
            continue
        paths = [sample.image_path(name, image_root) for name in demo.items]
        key = tuple(str(p) for p in paths)
        if key not in seen:
            seen.add(key)
            out.append((paths, demo.progress_points()))
    return out


def keyframe_consistency(runner, samples: Sequence[Sample], image_root=None, augment: float = 0.0,
                         seed: int = 0, limit: int | None = None) -> dict:
    """Errors (points) of `runner` (a `MatcherRunner`) asked with each keyframe of each demonstration as the
    observation. `augment` > 0: the observation is an augmented copy at that strength (0..1)."""
    demos = distinct_demos(samples, image_root)[:limit]
    rows = []
    rng = np.random.default_rng(seed)
    for paths, points in demos:
        keys = runner.image_features(paths)
        if augment > 0:
            observations = runner.image_encoder.encode([augment_image(read_image(p), rng, augment) for p in paths])
        else:
            observations = keys
        for k, (obs, point) in enumerate(zip(observations, points)):
            result = runner.matcher.match_visual(obs, keys, points)
            where = "first" if k == 0 else "last" if k == len(points) - 1 else "middle"
            error = None if result.na else abs(result.progress - point) * 100
            rows.append({"where": where, "error": error, "na": result.na, "read": result.progress, "point": point})
    return summarise(rows, len(demos))


def summarise(rows: list[dict], demos: int) -> dict:
    def part(selected):
        errors = [r["error"] for r in selected if r["error"] is not None]
        n = len(selected)
        return {
            "n": n,
            "within_5": round(100 * sum(e <= TOLERANCE * 100 + 1e-9 for e in errors) / n, 1) if n else None,
            "mean_error": round(float(np.mean(errors)), 2) if errors else None,
            "max_error": round(float(np.max(errors)), 2) if errors else None,
            "na": sum(r["na"] for r in selected),
            "mean_read": round(100 * float(np.mean([r["read"] for r in selected])), 1) if n else None,
        }

    out = {"demos": demos, "all": part(rows)}
    for where in ("first", "middle", "last"):
        out[where] = part([r for r in rows if r["where"] == where])
    return out
