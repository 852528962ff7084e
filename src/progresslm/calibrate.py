"""An abstention threshold chosen on training data, and the JSON file that carries it.

A training-free backend answers N/A when its confidence score (for `retrieval`: the best cosine
similarity between the observation and a demonstration keyframe) falls below a threshold. The
threshold is the one that best tells answerable from unanswerable training samples: it maximises
balanced accuracy, the mean of the share of answerable samples kept (score >= threshold) and the
share of unanswerable ones refused (score < threshold), so a split with few unanswerable samples
does not push it to "always answer".

The file: `{"threshold": 0.843233, "made_from": "...", "n": {"answerable": 2669, "unanswerable": 966},
"balanced_accuracy": 0.751166, "max_afrr": null, "features": "tf_efficientnet_lite0/224px"}`.
`features` names what the scores were computed with, so that a file made with other features is
refused, not misused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from progresslm.io import write_text_atomic


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    made_from: str = ""
    n: dict[str, int] = field(default_factory=dict)
    balanced_accuracy: float | None = None
    max_afrr: float | None = None  # the cap on refused answerable samples it was chosen under, if any
    features: str = ""

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (a temporary file renamed over the target)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, features: str | None = None) -> Calibration:
        """Read a calibration file; with `features`, refuse one made with other features."""
        path = Path(path)
        remedy = "make one with progresslm.backends.retrieval.calibrate_threshold on a training split"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration file; {remedy}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise CalibrationError(f"{path}: cannot read the calibration file ({err})") from None
        except json.JSONDecodeError as err:
            raise CalibrationError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); {remedy}") from None
        threshold = data.get("threshold") if isinstance(data, dict) else None
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise CalibrationError(f'{path}: needs a number under "threshold", found {threshold!r}; {remedy}')
        made_with = data.get("features", "")
        if features is not None and made_with and made_with != features:
            raise CalibrationError(
                f"{path}: the threshold was calibrated on {made_with} features but this backend computes "
                f"{features}; calibrate again"
            )
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**{**known, "threshold": float(threshold)})


def balanced_accuracy(answerable: Sequence[float], unanswerable: Sequence[float], threshold: float) -> float:
    """Mean of the share of answerable scores >= threshold and unanswerable scores < threshold.

    >>> balanced_accuracy([0.9, 0.8], [0.7, 0.85], threshold=0.75)  # (2/2 + 1/2) / 2
    0.75
    """
    kept = np.mean(np.asarray(answerable, dtype=float) >= threshold)
    refused = np.mean(np.asarray(unanswerable, dtype=float) < threshold)
    return float((kept + refused) / 2)


def best_threshold(
    answerable: Sequence[float], unanswerable: Sequence[float], max_afrr: float | None = None
) -> tuple[float, float]:
    """The threshold with the highest balanced accuracy, and that accuracy.

    Candidates are the midpoints between neighbouring distinct scores, plus the lowest score
    (answer everything) and a point above the highest (refuse everything). Ties go to the middle
    tied candidate (the lower of the two middle ones). When the two kinds are separable, this is
    the midpoint of the gap between them. With `max_afrr`, only thresholds that refuse at most
    that share of the answerable scores are candidates (answering everything always qualifies).

    >>> best_threshold([0.9, 0.8, 0.95], [0.5, 0.6])
    (0.7, 1.0)
    >>> best_threshold([0.9, 0.7], [0.8, 0.6])  # 0.65 and 0.85 tie at 0.75: the lower middle one
    (0.65, 0.75)
    >>> best_threshold([0.9, 0.7], [0.8, 0.75, 0.6])
    (0.85, 0.75)
    >>> best_threshold([0.9, 0.7], [0.8, 0.75, 0.6], max_afrr=0.0)  # 0.85 would refuse the 0.7
    (0.65, 0.666667)
    """
    pos = np.sort(np.asarray(answerable, dtype=float))
    neg = np.sort(np.asarray(unanswerable, dtype=float))
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            f"calibration needs answerable and unanswerable samples; got {pos.size} answerable and "
            f"{neg.size} unanswerable visual samples"
        )
    if max_afrr is not None and not 0.0 <= max_afrr <= 1.0:
        raise ValueError(f"max_afrr is a share in [0, 1], got {max_afrr}")
    values = np.unique(np.concatenate([pos, neg]))
    candidates = np.concatenate([values[:1], (values[:-1] + values[1:]) / 2, values[-1:] + 1e-6])
    kept = (pos.size - np.searchsorted(pos, candidates, side="left")) / pos.size
    refused = np.searchsorted(neg, candidates, side="left") / neg.size
    scores = (kept + refused) / 2
    if max_afrr is not None:
        scores = np.where(1.0 - kept <= max_afrr + 1e-12, scores, -1.0)
    best = np.flatnonzero(scores == scores.max())
    choice = best[(len(best) - 1) // 2]
    return round(float(candidates[choice]), 6), round(float(scores[choice]), 6)
