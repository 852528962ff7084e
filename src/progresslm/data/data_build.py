"""`progresslm data build`: Progress-Bench-style samples from users' episodes, in the authors' JSONL format with
images, written and carded like `sim build` (builder/core.py, builder/card.py), so that `eval`, `train sft` and `train grpo` read them
unchanged.

Per episode, key frames come from annotations (the source's own key steps, a per-frame column whose value changes
at each step end, or a file of step end times) or are spaced uniformly; progress is linear in time between key frames
(docs/protocol.md §2). Each observation episode is paired with another episode of the same task as its
demonstration (same camera: same-view; another camera: cross-view); text samples need step descriptions;
unanswerable samples pair the observation with another task's demonstration or steps. Episodes are split into
bench / sft / rl by task or by episode, seeded. Episodes are built in this process, over local processes or on a Ray
cluster (progresslm.builder.engines); every finished episode is saved under OUT/units/, so a killed build resumes."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from progresslm.bench.format import FILE_STEMS
from progresslm.bench.sampling import derive_seed, labelled_row, sample_frames
from progresslm.builder import core
from progresslm.builder.card import SPLITS
from progresslm.builder.engines import engine_problem
from progresslm.data.episode_sources import open_episodes, select
from progresslm.data.episodes import Episode, EpisodeSourceError, KeyStep, check_fps, parse_keysteps, scene_first
from progresslm.io import slug

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
UNANSWERABLE_PER_EPISODE = 2  # observations asked with another task's demonstration, per episode and kind


class DataBuildError(ValueError):
    """Settings or data that cannot make a benchmark: says what and where."""


@dataclass
class DataBuildConfig:
    source: str
    out: str
    keyframes: str = "auto"  # auto | uniform:N | column:NAME | times:FILE
    per_interval: int = 2  # observation frames inside each key-frame interval
    split_by: str = "task"  # task | episode
    splits: str = "bench:1"  # shares, e.g. "bench:0.5,sft:0.4,rl:0.1"
    seed: int = 0
    size: int = 224  # shorter image side, pixels
    quality: int = 90
    episodes: str | None = None  # indices, "0-9,12"
    cameras: list[str] | None = None
    fps: float | None = None  # frame folders / HDF5 without a stated rate
    task: str | None = None  # HDF5 task text
    workers: int = 1  # local processes (1: this one), or the CPUs of a local Ray instance
    engine: str = "local"  # local | ray (progresslm.builder.engines)
    ray_address: str | None = None  # a Ray cluster's head (HOST:6379); None: $RAY_ADDRESS, else a local instance
    command: str | None = None

    def __post_init__(self) -> None:
        parse_shares(self.splits)
        if self.split_by not in ("task", "episode"):
            raise DataBuildError(f"--split-by {self.split_by!r}: choose task or episode")
        if self.per_interval < 0 or self.size < 16:
            raise DataBuildError("--per-interval must be >= 0 and --size >= 16")
        keyframe_rule(self.keyframes)
        if self.fps is not None:  # checked for every source (videos ignore it): it enters the manifest (no NaN)
            try:
                check_fps(self.fps, "--fps")
            except EpisodeSourceError as err:
                raise DataBuildError(str(err)) from None
        if self.workers < 1:
            raise DataBuildError(f"--workers must be at least 1, got {self.workers}")
        problem = engine_problem(self.engine, self.ray_address)
        if problem:
            raise DataBuildError(problem)

    def identity(self) -> dict:
        data = asdict(self)
        for key in ("out", "workers", "engine", "ray_address", "command"):
            data.pop(key)
        data["version"] = FORMAT_VERSION
        return data


def parse_shares(text: str) -> dict[str, float]:
    """Split shares from "bench:0.5,sft:0.5" (normalised to sum 1).

    >>> parse_shares("bench:1,sft:3")
    {'bench': 0.25, 'sft': 0.75}
    """
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition(":")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not math.isfinite(share):
            raise DataBuildError(f"--splits {text!r}: {part.strip()} is not a share (a finite number >= 0)")
        if name not in SPLITS or share < 0:
            raise DataBuildError(f"--splits {text!r}: write shares like bench:0.5,sft:0.4,rl:0.1 (splits {', '.join(SPLITS)})")
        shares[name] = share
    total = sum(shares.values())
    if total <= 0:
        raise DataBuildError(f"--splits {text!r}: the shares sum to 0")
    return {k: v / total for k, v in shares.items() if v > 0}


def keyframe_rule(text: str) -> tuple[str, str]:
    """("auto"|"uniform"|"column"|"times", argument) from --keyframes.

    >>> keyframe_rule("uniform:4"), keyframe_rule("column:subtask_index")
    (('uniform', '4'), ('column', 'subtask_index'))
    """
    kind, _, arg = text.partition(":")
    if kind == "auto" and not arg:
        return kind, ""
    if kind == "uniform" and arg.isdigit() and int(arg) >= 1:
        return kind, arg
    if kind in ("column", "times") and arg:
        return kind, arg
    raise DataBuildError(f"--keyframes {text!r}: use auto, uniform:N (N >= 1 steps), column:NAME or times:FILE")


def read_times_file(path: Path) -> dict[str, list[KeyStep]]:
    """Key steps per episode id from JSON ({"<episode id>": [{"end": s, "text": ...}]}) or CSV (episode,end,text)."""
    if not path.is_file():
        raise DataBuildError(f"--keyframes times:{path}: no such file")
    if path.suffix.lower() == ".csv":
        grouped: dict[str, list[dict]] = {}
        with path.open(newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle)):
                if not {"episode", "end"} <= set(row):
                    raise DataBuildError(f"{path}: needs columns episode,end[,text] (row {i + 2})")
                grouped.setdefault(row["episode"], []).append({"end": row["end"], "text": row.get("text")})
    else:
        try:
            grouped = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataBuildError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(grouped, dict):
            raise DataBuildError(f"{path}: expected an object of episode id -> list of steps")
    try:
        return {str(k): parse_keysteps(v, f"{path} [{k}]") for k, v in grouped.items()}
    except EpisodeSourceError as err:
        raise DataBuildError(str(err)) from None


@dataclass
class Plan:
    """An episode's key frames (T+1 frame indices, the first is 0) and step texts (T, or None). An episode that
    reached only k < T of its task's key steps (`Episode.total_steps`: a stall, a failure) has k+1 key frames,
    `total` T and its `last` frame: its progress rises to k / T at its last key frame and holds there."""

    key_frames: list[int]
    texts: list[str] | None
    total: int | None = None
    last: int | None = None

    @property
    def steps(self) -> int:
        return self.total if self.total is not None else len(self.key_frames) - 1

    @property
    def complete(self) -> bool:
        """Every key step reached (only such an episode can be a demonstration)."""
        return len(self.key_frames) - 1 == self.steps

    @property
    def sampled_keys(self) -> list[int]:
        """The frames observations are sampled between: the key frames, and a partial episode's last frame (so that
        its hold after the last reached step is observed too)."""
        if self.complete or self.last is None or self.last <= self.key_frames[-1]:
            return list(self.key_frames)
        return [*self.key_frames, self.last]

    def progress(self, frame: int) -> float:
        if self.complete:
            return float(np.interp(frame, self.key_frames, np.linspace(0.0, 1.0, len(self.key_frames))))
        return float(np.interp(frame, self.key_frames, np.arange(len(self.key_frames)) / self.steps))


def plan_episode(episode: Episode, rule: tuple[str, str], times: dict[str, list[KeyStep]] | None) -> Plan:
    """Key frames of one episode by the rule; errors name the episode."""
    kind, arg = rule
    last = episode.length - 1
    if last < 1:
        raise DataBuildError(f"episode {episode.id}: {episode.length} frame(s); at least 2 are needed")
    steps: list[KeyStep] | None = None
    total = None
    if kind == "times":
        steps = (times or {}).get(episode.id)
        if steps is None:
            raise DataBuildError(f"--keyframes times:{arg}: no key steps for episode {episode.id!r}")
    elif kind == "column":
        if arg not in episode.columns:
            raise DataBuildError(f"--keyframes column:{arg}: episode {episode.id} has no such column "
                                 f"(columns: {', '.join(sorted(episode.columns)) or 'none'})")
        values = list(episode.columns[arg])
        ends = [i for i in range(len(values) - 1) if values[i + 1] != values[i]] + [len(values) - 1]
        texts = [values[i] for i in ends]
        steps = [KeyStep(i / episode.fps, v if isinstance(v, str) else None) for i, v in zip(ends, texts)]
    elif kind == "auto" and (episode.keysteps or episode.total_steps):
        steps, total = list(episode.keysteps or []), episode.total_steps
        if total is not None and len(steps) > total:
            raise DataBuildError(f"episode {episode.id}: {len(steps)} key steps, more than its total_steps {total}")
    if steps is None:
        n = int(arg) if kind == "uniform" else 5
        key = [int(round(j * last / n)) for j in range(n + 1)]
        if len(set(key)) < len(key):
            raise DataBuildError(f"episode {episode.id}: {episode.length} frames cannot hold {n} uniform steps")
        return Plan(key, None)
    key = [0]
    for step in steps:
        frame = int(round(min(step.end * episode.fps, last)))  # an end at 1e308 s is the last frame, not inf
        if frame <= key[-1]:
            raise DataBuildError(f"episode {episode.id}: key step ending at {step.end:.2f} s falls on frame {frame}, "
                                 f"not after the previous key frame {key[-1]}")
        key.append(frame)
    texts = [s.text for s in steps]
    if total is not None and len(steps) < total:  # reached k of T steps: progress holds at k / T after the last
        return Plan(key, texts if texts and all(texts) else None, total, last)
    return Plan(key, texts if all(texts) else None)


def assign(episodes: list[Episode], config: DataBuildConfig) -> dict[str, list[Episode]]:
    """Episodes per split, by task or by episode, seeded; shares rounded, each share > 0 gets at least one."""
    shares = parse_shares(config.splits)
    rng = np.random.default_rng(derive_seed(config.seed, "data-splits"))
    groups: dict[str, list[Episode]] = {}
    for episode in episodes:
        groups.setdefault(episode.task if config.split_by == "task" else episode.id, []).append(episode)
    keys = list(groups)
    order = [keys[i] for i in rng.permutation(len(keys))]
    names = [s for s in SPLITS if s in shares]
    counts = {s: int(round(shares[s] * len(order))) for s in names}
    for s in names:  # every split asked for holds something when there is enough to share
        if counts[s] == 0 and len(order) >= len(names):
            counts[s] = 1
    while sum(counts.values()) > len(order):
        counts[max(counts, key=counts.get)] -= 1
    counts[names[0]] += len(order) - sum(counts.values())
    out: dict[str, list[Episode]] = {}
    start = 0
    for s in names:
        chosen = set(order[start:start + counts[s]])
        start += counts[s]
        out[s] = [e for e in episodes if (e.task if config.split_by == "task" else e.id) in chosen]
    return out


@dataclass
class Unit:
    """One observation episode with its demonstration episode, another task's episode, and cameras."""

    split: str
    obs: int  # indices into the source's episode list
    demo: int
    other: int | None
    obs_camera: str
    cross_camera: str | None

    def key(self, episodes: list[Episode]) -> str:
        return f"{self.split}/{slug(episodes[self.obs].id)}"


def plan_units(splits: dict[str, list[Episode]], all_episodes: list[Episode], config: DataBuildConfig,
               notes: list[str], plans: dict[int, Plan] | None = None) -> list[Unit]:
    """Pairs within each split: each episode observed once, with the next episode of its task (seeded cyclic order)
    that reached every key step as its demonstration; another task of the split lends the unanswerable
    demonstration (an episode of it that reached every key step). With no `plans`, every episode is complete."""
    position = {id(e): i for i, e in enumerate(all_episodes)}

    def whole(episode: Episode) -> bool:
        return plans is None or plans[position[id(episode)]].complete

    units = []
    for split, episodes in splits.items():
        rng = np.random.default_rng(derive_seed(config.seed, "data-units", split))
        by_task: dict[str, list[Episode]] = {}
        for e in episodes:
            by_task.setdefault(e.task, []).append(e)
        tasks = list(by_task)
        for task, members in by_task.items():
            if len(members) < 2:
                notes.append(f"{split}: task {task!r} has one episode, so no demonstration from another episode: skipped")
                continue
            order = [members[i] for i in rng.permutation(len(members))]
            others = [t for t in tasks if t != task and any(whole(e) for e in by_task[t])]
            for k, obs in enumerate(order):
                demo = next((order[(k + j) % len(order)] for j in range(1, len(order))
                             if whole(order[(k + j) % len(order)])), None)
                if demo is None:
                    notes.append(f"{split}: episode {obs.id!r} has no other episode of its task that reached every "
                                 "key step to be its demonstration: skipped")
                    continue
                other = None
                if others:
                    other_task = others[int(rng.integers(len(others)))]
                    pool = [e for e in by_task[other_task] if whole(e)]
                    other = position[id(pool[int(rng.integers(len(pool)))])]
                cameras = [c for c in (config.cameras or obs.cameras) if c in obs.cameras and c in demo.cameras]
                if not cameras:
                    raise DataBuildError(f"episodes {obs.id} and {demo.id}: no camera in common among "
                                         f"{', '.join(config.cameras or obs.cameras)}")
                views = cameras if config.cameras else scene_first(cameras)  # by default no wrist observation
                obs_camera = views[int(rng.integers(len(views)))]
                rest = [c for c in cameras if c != obs_camera]
                cross = rest[int(rng.integers(len(rest)))] if rest else None
                units.append(Unit(split, position[id(obs)], position[id(demo)], other, obs_camera, cross))
    return units


def _save(images: list[np.ndarray], names: list[str], folder: Path, config: DataBuildConfig) -> None:
    for pixels, name in zip(images, names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
        scale = config.size / min(image.size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
        image.save(path, quality=config.quality)


def build_unit(unit: Unit, episodes: list[Episode], plans: dict[int, Plan], root: Path,
               config: DataBuildConfig) -> dict[str, list[dict]]:
    """Read, write and label one observation episode's samples."""
    obs, demo = episodes[unit.obs], episodes[unit.demo]
    obs_plan, demo_plan = plans[unit.obs], plans[unit.demo]
    rows: dict[str, list[dict]] = {stem: [] for stem in FILE_STEMS}
    if obs_plan.steps != demo_plan.steps:
        log.warning("episodes %s and %s have %d and %d key steps: not paired", obs.id, demo.id, obs_plan.steps,
                    demo_plan.steps)
        return rows
    trajectory = f"{obs.source}/{slug(obs.id)}"
    folder = root / trajectory
    rng = np.random.default_rng(derive_seed(config.seed, "data-unit", obs.id))
    T = obs_plan.steps
    frames = sample_frames(obs_plan.sampled_keys, config.per_interval)
    obs_names = [f"{slug(unit.obs_camera)}_{f:05d}.jpg" for f in frames]
    _save(obs.read(unit.obs_camera, frames), obs_names, folder, config)
    demo_names = {}
    for camera in filter(None, (unit.obs_camera, unit.cross_camera)):
        demo_names[camera] = [f"demo/{slug(camera)}_{f:05d}.jpg" for f in demo_plan.key_frames]
        _save(demo.read(camera, demo_plan.key_frames), demo_names[camera], folder, config)
    made = {"source": obs.source, "task": obs.task, "episode": obs.id, "demo_episode": demo.id}

    def row(goal, demo_value, image, progress, steps, extra, text=False, cameras=(None, None)) -> dict:
        return labelled_row(trajectory, goal, demo_value, steps, image, progress, text=text,
                            data_source="progresslm_data", demo_camera=cameras[0], observation_camera=cameras[1],
                            extra=extra)

    for f, name in zip(frames, obs_names):
        p = obs_plan.progress(f)
        info = dict(made, obs_frame=f, obs_time=round(obs.time(f), 4), obs_camera=unit.obs_camera)
        rows["visual_same_view"].append(row(
            obs.task, demo_names[unit.obs_camera], name, p, T, {"episode": dict(info, demo_camera=unit.obs_camera)}))
        if unit.cross_camera:
            rows["visual_cross_view"].append(row(
                obs.task, demo_names[unit.cross_camera], name, p, T,
                {"episode": dict(info, demo_camera=unit.cross_camera)}, cameras=(unit.cross_camera, unit.obs_camera)))
        if demo_plan.texts:
            rows["text-normal"].append(row(obs.task, demo_plan.texts, name, p, T, {"episode": info}, text=True))
    if unit.other is not None:
        other, other_plan = episodes[unit.other], plans[unit.other]
        chosen = sorted(rng.choice(len(frames), size=min(UNANSWERABLE_PER_EPISODE, len(frames)), replace=False))
        camera = unit.obs_camera if unit.obs_camera in other.cameras else other.cameras[0]
        names = [f"demo_other/{slug(camera)}_{f:05d}.jpg" for f in other_plan.key_frames]
        _save(other.read(camera, other_plan.key_frames), names, folder, config)
        for i in chosen:
            info = dict(made, obs_frame=frames[i], obs_camera=unit.obs_camera, demo_camera=camera,
                        unanswerable="other_task", demo_task=other.task, demo_episode=other.id)
            rows["visual-unanswerable"].append(row(
                other.task, names, obs_names[i], None, other_plan.steps, {"episode": info}))
        if other_plan.texts:
            for i in chosen:
                info = dict(made, obs_frame=frames[i], obs_camera=unit.obs_camera, unanswerable="other_task",
                            demo_task=other.task, demo_episode=other.id)
                rows["text-unanswerable"].append(row(
                    other.task, other_plan.texts, obs_names[i], None, other_plan.steps, {"episode": info}, text=True))
    return rows


@dataclass
class UnitJob:
    """What a worker needs to build one unit: it opens the episodes from `config.source` itself (their readers
    hold open files and closures, which do not pickle)."""

    config: DataBuildConfig
    unit: Unit
    plans: dict[int, Plan]  # of the unit's episodes
    root: str  # the images folder


_SOURCE: tuple[tuple, list[Episode]] | None = None  # the worker process's episodes: opened once, used by every unit


def _source_key(config: DataBuildConfig) -> tuple:
    return config.source, config.fps, config.task, config.episodes


def _open_source(config: DataBuildConfig, fresh: bool = False) -> list[Episode]:
    """The selected episodes of `config.source`, opened once per worker process; `fresh`: opened again (`build`
    does, so that a long-lived process sees a source that changed), and kept for the units built in this process."""
    global _SOURCE
    key = _source_key(config)
    if fresh or _SOURCE is None or _SOURCE[0] != key:
        options = {k: v for k, v in (("fps", config.fps), ("task", config.task)) if v is not None}
        _SOURCE = key, select(open_episodes(config.source, **options), config.episodes)
    return _SOURCE[1]


def _build_job(job: UnitJob) -> dict[str, list[dict]]:
    return build_unit(job.unit, _open_source(job.config), job.plans, Path(job.root), job.config)


@dataclass
class DataBuildOutcome:
    out: Path
    files: dict[str, list[Path]]
    samples: dict[str, dict[str, int]]
    episodes: int = 0
    seconds: float = 0.0
    built: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def image_root(self) -> Path:
        return self.out / "images"


def build(config: DataBuildConfig, progress: bool = True) -> DataBuildOutcome:
    """Build (or resume) the benchmark described by `config`."""
    out = Path(config.out)
    identity = config.identity()
    core.open_build(out, identity, DataBuildError)
    episodes = _open_source(config, fresh=True)
    rule = keyframe_rule(config.keyframes)
    times = read_times_file(Path(rule[1]).expanduser()) if rule[0] == "times" else None
    plans = {i: plan_episode(e, rule, times) for i, e in enumerate(episodes)}
    notes: list[str] = []
    splits = assign(episodes, config)
    units = plan_units(splits, episodes, config, notes, plans)
    if not units:
        raise DataBuildError(f"{config.source}: no task has two episodes in one split, so no sample can pair an "
                             "observation with a demonstration from another episode" + (f" ({notes[0]})" if notes else ""))
    keys = [unit.key(episodes) for unit in units]
    _check_keys(keys, units, episodes)
    task_splits = {s: sorted({e.task for e in es}) for s, es in splits.items()}
    core.write_manifest(out, {"identity": identity, "command": config.command, "splits": task_splits})
    start = time.perf_counter()
    unit_paths = [out / "units" / f"{key}.json" for key in keys]
    images = out / "images"
    todo = core.pending(unit_paths, images)
    jobs = [UnitJob(config, units[i], {k: plans[k] for k in (units[i].obs, units[i].demo, units[i].other)
                                       if k is not None}, str(images)) for i in todo]
    names = [f"episode unit {keys[i]} (source episode {episodes[units[i].obs].id})" for i in todo]
    core.run_units(_build_job, jobs, names, [unit_paths[i] for i in todo], images, engine=config.engine,
                   workers=config.workers, address=config.ray_address, desc="data build", total=len(units),
                   progress=progress)
    rows, _ = core.rows_by_split(unit_paths, [u.split for u in units])
    if not any(p.texts for p in plans.values()):
        notes.append("no step descriptions (annotations with text), so no text samples")
    if all(u.cross_camera is None for u in units):
        notes.append("one camera per episode, so no cross-view samples")
    if all(u.other is None for u in units):
        notes.append("one task per split, so no unanswerable samples (they pair an observation with another task)")
    outcome = DataBuildOutcome(out, {}, {}, episodes=len(episodes), notes=notes, built=len(todo))
    outcome.seconds = time.perf_counter() - start
    settings = {"source": config.source, "keyframes": config.keyframes, "split_by": config.split_by,
                "splits_asked": config.splits, "seed": config.seed, "size": config.size,
                "episodes": len(episodes), "command": config.command, "notes": notes,
                "settings_shown": ["source", "keyframes", "split_by", "splits_asked", "seed", "size", "episodes"],
                "split_title": "Tasks per split" + (" (disjoint)" if config.split_by == "task" else " (episodes disjoint)")}
    return core.finish(outcome, rows, task_splits, settings, f"Progress benchmark from {config.source}", FORMAT_VERSION)


def _check_keys(keys: list[str], units: list[Unit], episodes: list[Episode]) -> None:
    """Two episodes whose names give one key would overwrite each other's samples: stop, naming both."""
    seen: dict[str, Unit] = {}
    for key, unit in zip(keys, units):
        if key in seen:
            first = episodes[seen[key].obs]
            raise DataBuildError(f"episodes {first.id!r} and {episodes[unit.obs].id!r} give the same key {key!r}; "
                                 "rename one of them")
        seen[key] = unit
