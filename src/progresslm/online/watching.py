"""What `progresslm watch` does, less its argument parsing (cli/watch.py): one monitored run over a frame source
(`watch_source`: scorer + monitor + outputs), and `watch` over one source or many episodes of a robot-data source
against one demonstration (`episode_sources` plans them): per episode the curve, events, VOC, final progress and
monotonicity; across episodes a summary table (summary.md / summary.json) and a grid figure (grid.png)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from progresslm import __version__
from progresslm.data.data_build import keyframe_rule, plan_episode, read_times_file
from progresslm.io import OutsideRootError, confined, slug, write_text_atomic
from progresslm.online.drawing import Overlay, plot_curve
from progresslm.online.frame_sources import DIR_FPS, VIDEO_FPS, Frame, Source, episode_source
from progresslm.online.monitor import ProgressMonitor
from progresslm.online.scorer import ProgressScorer


class WatchError(ValueError):
    """A bad input to `progresslm watch`: says what and where."""


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


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


def demo_from_episode(episode, camera: str | None, keyframes: str) -> tuple[list, list[str] | None, str]:
    """(keyframe images, step texts or None, the camera read) of an episode used as the demonstration: key frames
    by the rule of `data build --keyframes` (auto: the episode's key steps, else uniform:5); `camera` when the
    episode has it, else its first."""
    rule = keyframe_rule(keyframes)
    times = read_times_file(Path(rule[1]).expanduser()) if rule[0] == "times" else None
    plan = plan_episode(episode, rule, times)
    camera = camera if camera in episode.cameras else episode.cameras[0]
    camera = episode.cameras.resolve(camera) if hasattr(episode.cameras, "resolve") else camera
    return episode.read(camera, plan.key_frames), plan.texts, camera


def episode_sources(episodes, camera: str | None, fps: float | None, every: int, start: float | None,
                    end: float | None, root: Path) -> tuple[list[Source], list[Path]]:
    """The frame source of each episode and its output folder ROOT/<key>: the key keeps names apart (`io.slug`:
    names that differ only in non-ASCII characters, or cut at 60 characters, get a hash) and stays under ROOT
    (`io.confined`); two episodes with one key are a WatchError naming both."""
    sources = [episode_source(e, camera, fps, every, start, end) for e in episodes]
    outs: list[Path] = []
    seen: dict[Path, str] = {}
    for episode in episodes:
        key = slug(episode.id) or f"episode_{episode.index}"
        try:
            out = confined(key, root, f"episode {episode.id!r} output folder", resolve=False)
        except OutsideRootError as err:
            raise WatchError(str(err)) from None
        if out in seen:
            raise WatchError(f"episodes {seen[out]!r} and {episode.id!r} both write to {out}; rename one")
        seen[out] = episode.id
        outs.append(out)
    return sources, outs


@dataclass
class WatchRun:
    """How one `progresslm watch` scores: the goal and demonstration, the backend, the monitor's parameters
    (ProgressMonitor's keyword arguments) and what the settings record of the sampling."""

    goal: str
    demo: list  # keyframes (paths or images) or step texts
    demo_kind: str  # "visual" | "text"
    backend: str
    options: object  # BackendOptions
    mode: str = "two-stage"
    monitor: dict = field(default_factory=dict)
    batch_size: int = 8
    video: bool = False
    quiet: bool = True
    fps: float | None = None
    every: int = 1
    start: float | None = None
    end: float | None = None
    demo_source: str | int | None = None  # --demo-video FILE or --demo-episode K
    demo_camera: str | None = None  # the camera the demonstration episode was read from
    demo_episode: int | None = None  # the source index of the demonstration episode, when it is one of the source's
    episodes_source: str | None = None  # --source SOURCE


@dataclass
class Watched:
    """What a run wrote: one summary per source (with the episode's id, task, source, camera and whether it is the
    demonstration, for episodes), the monitors, and the folders."""

    summaries: list[dict]
    monitors: list
    outs: list[Path]
    table: str | None = None  # summary.md, across episodes


def watch(run: WatchRun, sources: list[Source], outs: list[Path], episodes=None) -> Watched:
    """Score each source into its folder (`watch_source`); with `episodes` (one per source) also the table across
    them in OUT/summary.md, OUT/summary.json and OUT/grid.png (OUT: the folders' parent). The demonstration episode,
    when it is also watched, is scored (a check: it should rise to done against itself) and marked as such, in its
    events.json, its row and the table, and left out of the mean VOC."""
    done = Watched([], [], list(outs))
    curves = []
    with ProgressScorer(run.goal, run.demo, backend=run.backend, options=run.options, mode=run.mode,
                        demo_kind=run.demo_kind) as scorer:  # fmt: skip
        common = {
            "progresslm": __version__, "every": run.every, "start": run.start, "end": run.end,
            "batch": run.batch_size, "goal": scorer.goal,
            "demo": [d if isinstance(d, str) else f"keyframe {i}" for i, d in enumerate(run.demo)],
            "demo_kind": run.demo_kind, "demo_source": run.demo_source, "demo_camera": run.demo_camera,
            "backend": run.backend, "model": scorer.backend.model_name, "mode": run.mode,
            "options": dataclasses.asdict(run.options),
        }  # fmt: skip
        if episodes is not None:
            common["episodes_source"] = run.episodes_source
        for k, (source, out) in enumerate(zip(sources, outs)):
            monitor = ProgressMonitor(scorer, **run.monitor)
            episode = episodes[k] if episodes is not None else None
            demonstration = episode is not None and episode.index == run.demo_episode
            settings = dict(common, source=str(source.path), source_kind=source.kind, native_fps=source.native_fps,
                            fps=run.fps or (DIR_FPS if source.kind == "frames" else VIDEO_FPS), camera=source.camera,
                            demonstration=demonstration, monitor=monitor.settings())  # fmt: skip
            summary = watch_source(scorer, monitor, source, out, settings, run.batch_size, run.video, scorer.goal,
                                   quiet=run.quiet)
            if episode is not None:
                summary = dict(summary, episode=episode.id, task=episode.task, source=str(source.path),
                               camera=source.camera, demonstration=demonstration)  # fmt: skip
                voc = "n/a" if summary["voc"] is None else f"{summary['voc']:.2f}"
                label = f"{episode.id} (demonstration)" if demonstration else episode.id
                curves.append((f"{label} (VOC {voc})", list(monitor.history)))
            done.summaries.append(summary)
            done.monitors.append(monitor)
    if episodes is not None:
        root = outs[0].parent
        done.table = summary_table(done.summaries)
        write_text_atomic(root / "summary.md", done.table)
        write_json(root / "summary.json", {"settings": common, "episodes": done.summaries})
        plot_grid(curves, root / "grid.png")
    return done


def summary_table(rows: list[dict]) -> str:
    """Markdown: one line per episode (frames, final and maximum progress, VOC, monotonicity, N/A, done)."""

    def cell(value, digits=1):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| episode | task | frames | final % | max % | VOC | monotonic | N/A | done |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        name = f"{r['episode']} (demonstration)" if r.get("demonstration") else r["episode"]
        lines.append(f"| {name} | {r['task']} | {r['frames']} | {cell(r['progress'])} | "
                     f"{cell(r['max_progress'])} | {cell(r['voc'], 3)} | {cell(r['monotonicity'], 3)} | {r['na']} | "
                     f"{'yes' if r['done'] else 'no'} |")
    vocs = [r["voc"] for r in rows if r["voc"] is not None and not r.get("demonstration")]
    if vocs:
        left_out = ", the demonstration left out" if any(r.get("demonstration") for r in rows) else ""
        lines.append(f"\nMean VOC over {len(vocs)} episodes{left_out}: {statistics.fmean(vocs):.3f} "
                     f"(median {statistics.median(vocs):.3f}).")
    return "\n".join(lines) + "\n"


def plot_grid(curves: list[tuple[str, list]], path: Path, columns: int = 4) -> Path:
    """Small multiples: each episode's raw answers and smoothed estimate against time."""
    # lazy: matplotlib costs ~0.3 s at import and --help imports this module
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
