"""One unit of a simulated benchmark, for any simulator family (`sim.family`): a demonstration episode and an
observation episode of one task, rendered and turned into samples of every axis (rows of the authors' JSONL format).

Labels come from task state: key steps end where the family's detectors fire, progress is linear in time between
key-step ends, the anchor is the nearest keyframe. Unanswerable samples are made in the simulator: the observation
re-rendered with the task object edited (the family's edit kinds: recoloured, hidden, replaced); text naming an
object the scene does not have; another task's demonstration. Each row records how it was made under the key `sim`
(with `family` for every family but Meta-World, whose rows stay as they were before families).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from progresslm.bench.sampling import derive_seed, labelled_row, sample_frames
from progresslm.sim.family import DEFAULT_FAMILY, get_family, progress_labels


@dataclass(frozen=True)
class Unit:
    """What one worker builds: episode `index` of `task` in `split`."""

    split: str
    task: str
    index: int
    other_task: str  # a task of the same split whose demonstration stands for a wrong task
    seed: int
    size: int
    cameras: tuple[str, ...]
    level: str
    per_interval: int
    same_episode: bool
    quality: int = 90
    family: str = DEFAULT_FAMILY

    @property
    def key(self) -> str:
        return f"{self.split}/{self.task}__{self.index:03d}"

    @property
    def trajectory_id(self) -> str:
        return f"sim/{self.task}/{self.split}_{self.index:03d}"


@dataclass
class UnitResult:
    unit: Unit
    rows: dict[str, list[dict]] = field(default_factory=dict)  # output file stem -> rows
    attempts: dict[str, int] = field(default_factory=dict)  # task -> rollouts tried (for success rates)
    successes: dict[str, int] = field(default_factory=dict)
    frames_rendered: int = 0
    invisible_edits: dict[str, int] = field(default_factory=dict)  # edit kind -> edits no frame showed
    error: str | None = None


ROLES = {"demo": 0, "obs": 1, "other": 2}
SPLIT_SEED_OFFSET = {"bench": 0, "sft": 100_000, "rl": 200_000}
TRIES = 8


def episode_seed(unit: Unit, role: str, attempt: int) -> int:
    """Seeds that never collide between the units, roles and retries of one build, and that sit
    close together, so the Meta-World variant tables (one per 50 seeds) are built once per worker.

    >>> u = Unit("bench", "t", 3, "o", 0, 64, ("a", "b"), "none", 1, False)
    >>> episode_seed(u, "demo", 0), episode_seed(u, "obs", 0), episode_seed(u, "obs", 1)
    (72, 80, 81)
    """
    return (
        unit.seed * 1_000_000 + SPLIT_SEED_OFFSET[unit.split] + unit.index * len(ROLES) * TRIES
        + ROLES[role] * TRIES + attempt
    )


def _rollout(task: str, unit: Unit, role: str, counts: UnitResult, worker):
    """A successful episode with every key step found, trying the role's seeds until one works."""
    for attempt in range(TRIES):
        seed = episode_seed(unit, role, attempt)
        counts.attempts[task] = counts.attempts.get(task, 0) + 1
        episode = worker.rollout(task, seed)
        if episode is not None:
            counts.successes[task] = counts.successes.get(task, 0) + 1
            return episode
    raise RuntimeError(f"{task}: no successful episode with all key steps in {TRIES} seeds (last {seed})")


class _Images:
    """Renders a family's scenes into the unit's image folder, counting frames."""

    def __init__(self, folder: Path, result: UnitResult, quality: int):
        self.folder, self.result, self.quality = folder, result, quality

    def render(self, scene, frame: int, camera: str, edit=None) -> tuple[np.ndarray, dict]:
        pixels, record = scene.render(frame, camera, edit)
        self.result.frames_rendered += 1
        return pixels, record

    def write(self, pixels: np.ndarray, name: str) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=self.quality)

    def save(self, scene, frame: int, camera: str, name: str) -> np.ndarray:
        """Render `frame` from `camera` into `folder/name`; returns the pixels."""
        pixels, _ = self.render(scene, frame, camera)
        self.write(pixels, name)
        return pixels


# An edited observation must show its edit: at least this share of the pixels changes by more than
# CHANGE_LEVEL (of 255) in some channel against the same frame unedited. Frames are tried in random
# order (so edits do not cluster at one stage of the task) until one passes; an edit that shows on
# none is not made, and the dataset card counts it.
MIN_EDIT_CHANGE_PCT = 0.5
CHANGE_LEVEL = 40


def changed_pct(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of pixels where `a` and `b` differ by more than CHANGE_LEVEL in some channel.

    >>> a = np.zeros((10, 10, 3), np.uint8); b = a.copy(); b[0, :5] = 200
    >>> changed_pct(a, b)
    5.0
    """
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
    return round(100.0 * float(np.mean(diff > CHANGE_LEVEL)), 3)


def view_pair(family, cameras: tuple[str, ...], rng: np.random.Generator) -> tuple[str, str]:
    """The observation camera and the cross-view demonstration's camera. When the unit has both wide and close
    cameras of its family, the two are of different kinds (a wide demo with a close observation, or the reverse)."""
    kinds = {c: family.cameras.kind(c) for c in cameras}
    if len(set(kinds.values())) < 2:  # one kind (Meta-World's corners): any two
        return tuple(str(c) for c in rng.choice(cameras, size=2, replace=False))
    obs = str(rng.choice(cameras))
    return obs, str(rng.choice([c for c in cameras if kinds[c] != kinds[obs]]))


def build_unit(unit: Unit, images_root: Path, worker=None) -> UnitResult:
    """Roll out, render and label one unit. Runs in a worker process; `worker` (the family's `Worker`) keeps envs and
    renderers for the next unit (without one, a worker is made and closed here)."""
    family = get_family(unit.family)
    own = worker is None
    worker = family.worker() if own else worker
    try:
        return _build_unit(unit, images_root, family, worker)
    finally:
        if own:
            worker.close()


def _build_unit(unit: Unit, images_root: Path, family, worker) -> UnitResult:
    result = UnitResult(unit=unit)
    rng = np.random.default_rng(derive_seed(unit.seed, unit.key, "rng"))
    tasks = family.tasks()
    spec, other = tasks[unit.task], tasks[unit.other_task]
    demo_ep = _rollout(unit.task, unit, "demo", result, worker)
    obs_ep = demo_ep if unit.same_episode else _rollout(unit.task, unit, "obs", result, worker)
    other_ep = _rollout(unit.other_task, unit, "other", result, worker)
    obs_camera, demo_camera_cross = view_pair(family, unit.cameras, rng)
    folder = images_root / unit.trajectory_id
    images = _Images(folder, result, unit.quality)
    labels = progress_labels(obs_ep.key_frames, obs_ep.n_frames)
    T = len(spec.step_descriptions)
    frames = sample_frames(obs_ep.key_frames, unit.per_interval)
    made = {
        "task": unit.task,
        "demo_seed": demo_ep.seed,
        "obs_seed": obs_ep.seed,
        "same_episode": unit.same_episode,
        "level": unit.level,
    }
    if unit.family != DEFAULT_FAMILY:
        made = {"family": unit.family, **made}

    scenes = []
    try:
        demo_scene = worker.scene(demo_ep, unit.size, unit.cameras)
        scenes.append(demo_scene)
        obs_scene = demo_scene if unit.same_episode else worker.scene(obs_ep, unit.size, unit.cameras)
        scenes.append(obs_scene)
        other_scene = worker.scene(other_ep, unit.size, unit.cameras)
        scenes.append(other_scene)
        demo_scene.style = other_scene.style = worker.sample_style(unit.level, demo_scene, rng)
        obs_scene.style = demo_scene.style if unit.same_episode else worker.sample_style(unit.level, obs_scene, rng)
        made["demo_style"], made["obs_style"] = demo_scene.style.to_dict(), obs_scene.style.to_dict()

        # One framing for demo and observation (a same-view pair shares its camera); the other
        # task's demonstration is framed on its own episode, as a demonstration of that task would be.
        demo_scene.frame([demo_ep, obs_ep])
        obs_scene.framing = demo_scene.framing
        other_scene.frame([other_ep])
        made["framing"] = demo_scene.framing.to_dict()

        demo_names = {}
        for camera in (obs_camera, demo_camera_cross):
            demo_names[camera] = [f"demo/{camera}_{f:04d}.jpg" for f in demo_ep.key_frames]
            for f, name in zip(demo_ep.key_frames, demo_names[camera]):
                images.save(demo_scene, f, camera, name)
        obs_pixels = {f: images.save(obs_scene, f, obs_camera, f"{obs_camera}_{f:04d}.jpg") for f in frames}
        other_names = [f"demo_other/{obs_camera}_{f:04d}.jpg" for f in other_ep.key_frames]
        for f, name in zip(other_ep.key_frames, other_names):
            images.save(other_scene, f, obs_camera, name)

        rows = result.rows
        for stem in ("visual_same_view", "visual_cross_view", "text-normal", "visual-unanswerable", "text-unanswerable"):
            rows[stem] = []

        def row(goal, demo, obs, progress, extra, text=False, steps=T, cameras=(None, None)) -> dict:
            return labelled_row(unit.trajectory_id, goal, demo, steps, obs, progress, text=text,
                                data_source="progresslm_sim", demo_camera=cameras[0], observation_camera=cameras[1],
                                extra=extra)

        for f in frames:
            p = float(labels[f])
            obs = f"{obs_camera}_{f:04d}.jpg"
            sim = dict(made, obs_frame=f)
            rows["visual_same_view"].append(row(
                spec.goal, demo_names[obs_camera], obs, p, {"sim": dict(sim, demo_camera=obs_camera, obs_camera=obs_camera)}))
            rows["visual_cross_view"].append(row(
                spec.goal, demo_names[demo_camera_cross], obs, p,
                {"sim": dict(sim, demo_camera=demo_camera_cross, obs_camera=obs_camera)},
                cameras=(demo_camera_cross, obs_camera)))
            rows["text-normal"].append(row(
                spec.goal, list(spec.step_descriptions), obs, p, {"sim": dict(sim, obs_camera=obs_camera)}, text=True))

        # (a) the observation re-rendered with the object edited; the demonstration as it was
        inner = [f for f in frames if 0 < f < obs_ep.key_frames[-1]]
        order = [int(f) for f in rng.permutation(inner)]
        for kind in family.edit_kinds:
            found = None
            for f in order:
                pixels, record = images.render(obs_scene, f, obs_camera, edit=(kind, rng))
                record["changed_pct"] = changed_pct(pixels, obs_pixels[f])
                if record["changed_pct"] >= MIN_EDIT_CHANGE_PCT:
                    found = f, pixels, record
                    break
            if found is None:
                result.invisible_edits[kind] = result.invisible_edits.get(kind, 0) + 1
                continue
            f, pixels, record = found
            order.remove(f)
            name = f"{obs_camera}_{f:04d}_edit.jpg"
            images.write(pixels, name)
            rows["visual-unanswerable"].append(row(
                spec.goal, demo_names[obs_camera], name, None,
                {"sim": dict(made, obs_frame=f, obs_camera=obs_camera, demo_camera=obs_camera,
                             unanswerable="edit_" + kind, edit=record)}))
        # (c) another task's demonstration with this task's observation
        for f in sorted(rng.choice(frames, size=min(2, len(frames)), replace=False).tolist()):
            rows["visual-unanswerable"].append(row(
                other.goal, other_names, f"{obs_camera}_{f:04d}.jpg", None,
                {"sim": dict(made, obs_frame=f, obs_camera=obs_camera, demo_camera=obs_camera,
                             unanswerable="other_task", demo_task=other.name, demo_seed=other_ep.seed)},
                steps=len(other_names) - 1))
        # (b) text naming an object the scene does not have, (c) another task's steps
        for j, f in enumerate(frames[::2]):
            obs = f"{obs_camera}_{f:04d}.jpg"
            if j % 2 == 0:
                absent = family.absent_objects[int(rng.integers(len(family.absent_objects)))]
                goal = spec.goal.replace(spec.object_name, absent)
                steps = [s.replace(spec.object_name, absent) for s in spec.step_descriptions]
                how = {"unanswerable": "text_object", "object": spec.object_name, "named": absent}
            else:
                goal, steps = other.goal, list(other.step_descriptions)
                how = {"unanswerable": "other_task", "demo_task": other.name}
            rows["text-unanswerable"].append(row(
                goal, steps, obs, None, {"sim": dict(made, obs_frame=f, **how)}, text=True, steps=len(steps)))
    finally:
        for scene in {id(s): s for s in scenes}.values():
            scene.close()
    return result


def unit_to_json(result: UnitResult) -> dict:
    return {"unit": asdict(result.unit), "rows": result.rows, "attempts": result.attempts,
            "successes": result.successes, "frames_rendered": result.frames_rendered,
            "invisible_edits": result.invisible_edits}
