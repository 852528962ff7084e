"""One monitored run over a frame source (`watch_source`: scorer + monitor + outputs), and many episodes of a
robot-data source against one demonstration (`watch_episodes`): per episode the curve, events, VOC, final progress
and monotonicity; across episodes a summary table (summary.md / summary.json) and a grid figure (grid.png)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from progresslm.io import write_text_atomic
from progresslm.online.drawing import Overlay, plot_curve
from progresslm.online.frame_sources import Frame, Source


class WatchError(ValueError):
    """A bad input to `progresslm watch`: says what and where."""


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def events_record(settings: dict, monitor, sources: list[str], complete: bool, skipped=()) -> dict:
    steps = [dict(step.to_dict(), source=source) for step, source in zip(monitor.history, sources)]
    summary = dict(monitor.summary(), monotonicity=monotonicity(monitor.history))
    return {"complete": complete, "settings": settings, "summary": summary,
            "events": [event.to_dict() for event in monitor.events], "steps": steps,
            "skipped": list(skipped)}  # fmt: skip


def monotonicity(steps) -> float | None:
    """Share of consecutive answered frames whose raw answer does not fall (1: the curve only rises); None with
    fewer than 2 answers.

    >>> from types import SimpleNamespace as S
    >>> monotonicity([S(raw=0.1), S(raw=0.3), S(raw=None), S(raw=0.2), S(raw=0.2)])
    0.6667
    """
    answered = [s.raw for s in steps if s.raw is not None]
    if len(answered) < 2:
        return None
    pairs = list(zip(answered, answered[1:]))
    return round(sum(b >= a for a, b in pairs) / len(pairs), 4)


def batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def watch_source(scorer, monitor, source: Source, out: Path, settings: dict, batch_size: int, video: bool,
                 title: str, quiet: bool = True):
    """Score `source` frame batch by frame batch into `monitor`; OUT/events.json is rewritten after every batch
    (an interrupted run keeps what it scored), OUT/curve.png drawn at the end, OUT/overlay.mp4 with `video`."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    overlay = Overlay(out / "overlay.mp4", source.rate, source.duration_s) if video else None
    sources: list[str] = []
    bar = tqdm(total=source.count, desc=f"watch {settings['backend']}", unit="frame", disable=quiet)
    try:
        for batch in batches(source.frames, batch_size):
            steps = monitor.update_many([f.image for f in batch], [f.t for f in batch])
            sources.extend(f.source for f in batch)
            if overlay is not None:
                for frame, step in zip(batch, steps):
                    overlay.add(frame.image, monitor.history[: step.index + 1],
                                [e for e in monitor.events if e.index <= step.index])  # fmt: skip
            write_json(out / "events.json", events_record(settings, monitor, sources, False, source.skipped))
            bar.update(len(batch))
            if steps[-1].smoothed is not None:
                bar.set_postfix(progress=f"{steps[-1].smoothed:.0%}")
    finally:
        bar.close()
        if overlay is not None:
            overlay.close()
    if not monitor.history:
        raise WatchError(f"source: {source.path} gave no frames to score")
    record = events_record(settings, monitor, sources, True, source.skipped)
    write_json(out / "events.json", record)
    voc = record["summary"]["voc"]
    plot_curve(monitor.history, monitor.events, out / "curve.png",
               f"{title}  ({settings['model']}, {len(monitor.history)} frames, VOC {'n/a' if voc is None else f'{voc:.2f}'})")
    return record["summary"]


# ---- many episodes --------------------------------------------------------------------------


def demo_from_episode(episode, camera: str | None, keyframes: str) -> tuple[list, list[str] | None]:
    """(keyframe images, step texts or None) of an episode used as the demonstration: key frames by the rule of
    `data build --keyframes` (auto: the episode's key steps, else uniform:5)."""
    from progresslm.data.data_build import keyframe_rule, plan_episode, read_times_file

    rule = keyframe_rule(keyframes)
    times = read_times_file(Path(rule[1]).expanduser()) if rule[0] == "times" else None
    plan = plan_episode(episode, rule, times)
    camera = camera if camera in episode.cameras else episode.cameras[0]
    return episode.read(camera, plan.key_frames), plan.texts


def summary_table(rows: list[dict]) -> str:
    """Markdown: one line per episode (frames, final and maximum progress, VOC, monotonicity, N/A, done)."""

    def cell(value, digits=1):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| episode | task | frames | final % | max % | VOC | monotonic | N/A | done |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['episode']} | {r['task']} | {r['frames']} | {cell(r['progress'])} | "
                     f"{cell(r['max_progress'])} | {cell(r['voc'], 3)} | {cell(r['monotonicity'], 3)} | {r['na']} | "
                     f"{'yes' if r['done'] else 'no'} |")
    vocs = [r["voc"] for r in rows if r["voc"] is not None]
    if vocs:
        import statistics

        lines.append(f"\nMean VOC over {len(vocs)} episodes: {statistics.fmean(vocs):.3f} "
                     f"(median {statistics.median(vocs):.3f}).")
    return "\n".join(lines) + "\n"


def plot_grid(curves: list[tuple[str, list]], path: Path, columns: int = 4) -> Path:
    """Small multiples: each episode's raw answers and smoothed estimate against time."""
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, math.ceil(len(curves) / columns))
    figure = Figure(figsize=(3.2 * min(columns, len(curves)), 2.4 * rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, min(columns, len(curves)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(curves):
            ax.axis("off")
            continue
        title, steps = curves[k]
        ax.plot([s.t for s in steps], [float("nan") if s.smoothed is None else 100 * s.smoothed for s in steps],
                color="#1f77b4", linewidth=1.5)
        answered = [(s.t, 100 * s.raw) for s in steps if s.raw is not None]
        if answered:
            ax.scatter(*zip(*answered), s=6, color="#444444")
        ax.set_ylim(-5, 105)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    figure.supxlabel("time (s)", fontsize=8)
    figure.supylabel("progress (%)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    figure.clear()
    return path
