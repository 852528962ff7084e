"""Like-for-like comparison of runs that abstain differently.

A run that answers N/A on the hard samples shows a low NSE on the easy ones it keeps (a similarity-threshold
baseline refuses the observations least like the demonstration). `progresslm report` therefore also compares each
run with the first one (the reference) on the answerable samples **both** answered with a value: the NSE of each
on those samples, their difference, and a 95 % bootstrap interval of the difference (trajectories resampled,
since samples of one trajectory are not independent).

The per-sample answers come from each run folder's `results.jsonl` (first draw, latest record per sample) and the
labels from the benchmark files named in the reference's `config.json`; when those files are gone, there is no
like-for-like table (the summary tables do not need them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from progresslm.bench.format import BenchFormatError, load_bench
from progresslm.metrics import mean_interval, nse_term
from progresslm.report_tables import Run, bench_key
from progresslm.results import ResultStore
from progresslm.types import Status

PAIRED_SPLITS = ("visual_same_view", "visual_cross_view", "text")


@dataclass(frozen=True)
class Answers:
    """One run's numeric answers: uid -> score in [0, 1]; `asked` every uid it has a reply for (value or not)."""

    name: str
    scores: dict[str, float]
    asked: frozenset[str] | None = None  # None: every sample


@dataclass(frozen=True)
class Labels:
    """The benchmark's answerable samples: uid -> (split, progress label in [0, 1], trajectory id)."""

    rows: dict[str, tuple[str, float, str]]


@dataclass(frozen=True)
class Pair:
    """The reference and another run on the samples of one split that both answered."""

    other: str
    split: str
    n_both: int  # answered by both
    n_reference: int  # answered by the reference
    n_split: int  # answerable samples of the split both runs were asked
    nse_reference: float  # percent, on the `n_both` samples
    nse_other: float
    ci: tuple[float, float] | None  # 95 % interval of nse_other - nse_reference

    @property
    def other_refused_share(self) -> float:
        """Of the samples the reference answered, the share the other run left without a value."""
        return 1.0 - self.n_both / self.n_reference if self.n_reference else 0.0


def load_answers(folder: str | Path, name: str) -> Answers:
    """The first draw's numeric answers of a run folder (the latest record per sample wins, as in `eval`)."""
    latest, _, _ = ResultStore(Path(folder) / "results.jsonl").latest()
    scores = {}
    for (uid, draw), record in latest.items():
        if draw == 0:
            prediction = record.prediction()  # parsed again, as the metrics do
            if prediction.status is Status.VALUE and prediction.score is not None:
                scores[uid] = float(prediction.score)
    return Answers(name, scores, frozenset(uid for uid, draw in latest if draw == 0))


def load_labels(config: dict) -> Labels | None:
    """The answerable samples of the benchmark a run's `config.json` names; None when its files are not readable."""
    files = config.get("bench") or []
    if not files:
        return None
    try:
        samples = load_bench(files).samples
    except (BenchFormatError, OSError, ValueError):
        return None
    return Labels({s.uid: (s.split, float(s.progress), s.trajectory_id) for s in samples
                   if s.answerable and s.progress is not None and s.split in PAIRED_SPLITS})  # fmt: skip


def compare(reference: Answers, other: Answers, labels: Labels, seed: int = 0) -> list[Pair]:
    """`other` beside `reference`, split by split, on the samples both answered."""
    pairs = []
    for split in PAIRED_SPLITS:
        uids = [uid for uid, row in labels.rows.items() if row[0] == split
                and all(run.asked is None or uid in run.asked for run in (reference, other))]  # both asked (--limit)
        answered = [uid for uid in uids if uid in reference.scores]
        both = [uid for uid in answered if uid in other.scores]
        if not both:
            continue
        ref_err = np.array([nse_term(labels.rows[u][1], reference.scores[u]) for u in both])
        other_err = np.array([nse_term(labels.rows[u][1], other.scores[u]) for u in both])
        interval = mean_interval(100 * (other_err - ref_err), [labels.rows[u][2] for u in both], seed=seed)
        pairs.append(Pair(other.name, split, len(both), len(answered), len(uids), 100 * float(ref_err.mean()),
                          100 * float(other_err.mean()), tuple(interval) if interval else None))  # fmt: skip
    return pairs


def like_for_like(folders: Sequence[Path], runs: Sequence[Run]) -> list[Pair] | None:
    """Every run beside the first (`runs[i]` loaded from `folders[i]`); None when the labels cannot be read."""
    labels = load_labels(runs[0].config)
    if labels is None:
        return None
    reference = load_answers(folders[0], runs[0].name)
    pairs = []
    for folder, run in zip(folders[1:], runs[1:]):
        if same_bench(run.config, runs[0].config):  # the same sample ids on another benchmark mean nothing
            pairs += compare(reference, load_answers(folder, run.name), labels)
    return pairs


def same_bench(a: dict, b: dict) -> bool:
    """Whether two runs' configs name the same benchmark files (however the paths were typed, in any order)."""
    return bench_key(a) == bench_key(b)
