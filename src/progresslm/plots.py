"""PNG plots of one run's predictions: score histograms per split and progress per trajectory.

matplotlib is imported inside each function and drives the Agg canvas directly, with no pyplot:
no global figure state, no display needed, nothing left open after a call.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from progresslm.types import SPLITS, Prediction, Sample, Status, task_of

DPI = 100
PRED_COLOUR = "#1f77b4"
TRUTH_COLOUR = "#444444"
MISSING_COLOUR = "#d62728"
# Predicted scores in 5-point bins: fine enough to show collapse onto 0 / 50 / 100.
BINS = [5.0 * i for i in range(21)]


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float]):
    # lazy: matplotlib costs ~0.3 s at import and --help imports this module
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, axes[:n_panels]


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI)
    figure.clear()
    return path


def _check_aligned(samples: Sequence[Sample], preds: Sequence[Prediction]) -> None:
    if len(samples) != len(preds):
        raise ValueError(f"{len(samples)} samples but {len(preds)} predictions; they must be aligned one to one")


def plot_score_histograms(samples: Sequence[Sample], preds: Sequence[Prediction], path: str | Path) -> Path:
    """One panel per split present: predicted scores (%) as bars, labels (%) as a step line.

    Panel titles count the N/A replies and parse failures, which the histogram cannot show.
    """
    _check_aligned(samples, preds)
    by_split: dict[str, list[tuple[Sample, Prediction]]] = defaultdict(list)
    for sample, pred in zip(samples, preds):
        by_split[sample.split].append((sample, pred))
    names = [s for s in SPLITS if s in by_split] + sorted(s for s in by_split if s not in SPLITS)

    figure, axes = _figure(max(len(names), 1), ncols=3, panel_size=(4.2, 3.2))
    if not names:
        axes[0].text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, name in zip(axes, names):
        pairs = by_split[name]
        scores = [100.0 * p.score for _, p in pairs if p.has_value and p.score is not None]
        n_na = sum(p.status is Status.NA for _, p in pairs)
        n_fail = sum(p.status is Status.PARSE_FAILURE for _, p in pairs)
        ax.hist(scores, bins=BINS, color=PRED_COLOUR, alpha=0.75, label="predicted")
        labels = [100.0 * s.progress for s, _ in pairs if s.progress is not None]
        if labels:
            ax.hist(labels, bins=BINS, histtype="step", color=TRUTH_COLOUR, linewidth=1.5, label="ground truth")
        if not scores:
            ax.text(0.5, 0.5, "no predicted values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{name} (n={len(pairs)})\nN/A {n_na} · parse failures {n_fail}", fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, None if scores or labels else 1)
        ax.set_xlabel("progress (%)", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
        ax.tick_params(labelsize=7)
        if scores or labels:
            ax.legend(fontsize=7)
    return _save(figure, path)


def _pick_trajectories(samples: Sequence[Sample], preds: Sequence[Prediction], limit: int):
    """Answerable (trajectory_id, split) groups spread over the tasks: each task's largest group in turn (ties by
    name), then each task's second, and so on, so that every task shows before any shows twice."""
    groups: dict[tuple[str, str], list[tuple[Sample, Prediction]]] = defaultdict(list)
    task: dict[tuple[str, str], str] = {}
    for sample, pred in zip(samples, preds):
        if sample.answerable:
            key = (sample.trajectory_id, sample.split)
            groups[key].append((sample, pred))
            task[key] = task_of(sample)
    by_task: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in sorted(groups, key=lambda key: (-len(groups[key]), key)):
        by_task[task[key]].append(key)
    order = sorted(by_task, key=lambda name: (-len(groups[by_task[name][0]]), by_task[name][0]))
    keys: list[tuple[str, str]] = []
    for rank in range(max((len(v) for v in by_task.values()), default=0)):
        keys += [by_task[name][rank] for name in order if rank < len(by_task[name])]
    return [(key, sorted(groups[key], key=lambda pair: (pair[0].progress, pair[0].uid))) for key in keys[:limit]]


def panel_title(trajectory_id: str, split: str, width: int = 30) -> str:
    """The whole trajectory id, wrapped (never cut), without the `sim/` prefix every simulated id shares.

    >>> print(panel_title("sim/pick-place-wall-v3/bench-000123-corner2", "visual_same_view"))
    pick-place-wall-v3/bench-
    000123-corner2 · visual_same_view
    """
    shown = trajectory_id.removeprefix("sim/")
    lines = [""]
    for piece in re.findall(r"[^/_-]+[/_-]?|[/_-]", shown):  # break after "/", "_" or "-" when a line is full
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    if len(lines[-1]) + len(split) + 3 <= width + 12:
        lines[-1] = f"{lines[-1]} · {split}"
    else:
        lines.append(split)
    return "\n".join(lines)


def plot_trajectories(
    samples: Sequence[Sample], preds: Sequence[Prediction], path: str | Path, max_trajectories: int = 12
) -> Path:
    """Predicted against true progress for up to `max_trajectories` answerable trajectories.

    Samples without a value sit below the axis (crosses: N/A, triangles: parse failures), so a
    panel shows where along the trajectory the model abstained.
    """
    _check_aligned(samples, preds)
    picked = _pick_trajectories(samples, preds, max_trajectories)
    figure, axes = _figure(max(len(picked), 1), ncols=4, panel_size=(2.8, 2.6))
    if not picked:
        axes[0].text(0.5, 0.5, "no answerable trajectories", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, ((trajectory_id, split), pairs) in zip(axes, picked):
        ax.plot([0, 100], [0, 100], linestyle="--", color="#999999", linewidth=1)
        valued = [(100 * s.progress, 100 * p.score) for s, p in pairs if p.has_value and p.score is not None]
        if valued:
            ax.plot(*zip(*valued), marker="o", markersize=3, color=PRED_COLOUR, linewidth=1)
        for status, marker, label in ((Status.NA, "x", "N/A"), (Status.PARSE_FAILURE, "v", "parse failure")):
            xs = [100 * s.progress for s, p in pairs if p.status is status]
            if xs:
                ax.plot(xs, [-6.0] * len(xs), linestyle="none", marker=marker, color=MISSING_COLOUR,
                        label=f"{label} ({len(xs)})")
        if any(not p.has_value for _, p in pairs):
            ax.legend(fontsize=6, loc="upper left")
        ax.set_title(panel_title(trajectory_id, split), fontsize=7)
        ax.set_xlim(-3, 103)
        ax.set_ylim(-12, 105)
        ax.set_xlabel("true (%)", fontsize=7)
        ax.set_ylabel("predicted (%)", fontsize=7)
        ax.tick_params(labelsize=6)
    return _save(figure, path)
