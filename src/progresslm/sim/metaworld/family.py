"""Meta-World behind the family contract (`progresslm.sim.family`): its tasks, cameras, scripted rollouts over an env
pool, and scenes rendered with MuJoCo (`sim.mujoco_scene`: styles, edits, framing, hidden goal sites)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np

from progresslm.sim.family import CameraSet, TaskInfo, gl_problem, package_problem
from progresslm.sim.metaworld.rollout import EnvPool, restore, rollout, rollout_other
from progresslm.sim.metaworld.tasks import TASKS, get_task, object_geom_ids
from progresslm.sim.mujoco_scene.edits import edit_object, goal_sites, hide_sites, object_colours
from progresslm.sim.mujoco_scene.framing import apply_framing, frame_cameras
from progresslm.sim.mujoco_scene.randomise import Randomizer
from progresslm.sim.mujoco_scene.render import check_gl

# Things no Meta-World scene holds, for text that names an object the scene does not have.
ABSENT_OBJECTS = ("banana", "teddy bear", "red apple", "coffee mug", "tennis ball", "toy car", "sponge", "screwdriver")
# Meta-World's four corner cameras show the scene (sim.mujoco_scene.render.SCENE_CAMERAS); none rides on the hand.
CAMERAS = CameraSet(wide=("corner", "corner2", "corner3", "corner4"), close=(), export=("corner3", "topview"))


class MetaWorldFamily:
    name = "metaworld"
    extra = "sim"
    fps = 10.0  # Meta-World's 80 Hz physics, 8 substeps per env step
    edit_kinds = ("recolor", "hide", "replace")
    absent_objects = ABSENT_OBJECTS
    cameras = CAMERAS

    def tasks(self) -> dict[str, TaskInfo]:
        return {name: TaskInfo(name, self.name, spec.goal, spec.object_name, tuple(spec.step_descriptions))
                for name, spec in TASKS.items()}  # fmt: skip

    def problem(self) -> str | None:
        """Why Meta-World cannot run here (a package missing, no working offscreen GL), or None."""
        return package_problem(("mujoco", "metaworld", "gymnasium"), self.extra) or gl_problem()

    def worker(self) -> MetaWorldWorker:
        return MetaWorldWorker()


class MetaWorldWorker:
    """Envs and renderers of one process (`EnvPool`), kept across units and tasks."""

    def __init__(self, keep: int = 12):
        check_gl()  # before anything imports mujoco: picks EGL on a headless machine

        self.pool = EnvPool(keep=keep)

    def rollout(self, task: str, seed: int, kind: str = "expert", stall_step: int | None = None):
        if kind == "expert" and stall_step is None:
            return rollout(task, seed, pool=self.pool)

        return rollout_other(task, seed, kind, stall_step, pool=self.pool)

    def scene(self, episode, size: int, cameras: Sequence[str]) -> MetaWorldScene:
        return MetaWorldScene(episode, size, cameras, self.pool)

    def sample_style(self, level: str, scene: MetaWorldScene, rng: np.random.Generator):
        """A scene look whose distractors keep off the object's path and do not share its colours."""

        trace = scene.episode.trace
        avoid = [trace.obj[0][:2], trace.goal[0][:2], trace.obj[-1][:2]]
        avoid += [p[:2] for p in trace.hand[:: max(len(trace) // 8, 1)]]
        return Randomizer(level).sample(rng, avoid_xy=avoid, avoid_rgb=object_colours(scene.model, scene.object_geoms))

    def close(self) -> None:
        self.pool.close()


class MetaWorldScene:
    """An env restored to an episode's frames, with its renderer, style and framing."""

    def __init__(self, episode, size: int, cameras: Sequence[str], pool):
        self.episode, self.cameras, self.pool = episode, tuple(cameras), pool
        self.style = None
        self.env = pool.acquire(episode.task, episode.seed)[0]
        self.model = self.env.model
        self.renderer = pool.renderer(self.env, size)
        self.object_geoms = object_geom_ids(self.model, get_task(episode.task))
        self.goal_sites = goal_sites(self.model)  # found once per episode, hidden in every frame
        self.framing = None

    def frame(self, episodes) -> None:
        """Aim and zoom every camera of the unit at the region where `episodes` happen."""

        self.framing = frame_cameras(self.model, self.cameras, region_points(episodes))

    def render(self, frame: int, camera: str, edit: tuple[str, np.random.Generator] | None = None):
        restore(self.env, self.episode.states[frame])
        record: dict = {}
        with ExitStack() as stack:
            stack.enter_context(apply_framing(self.model, self.framing))
            stack.enter_context(hide_sites(self.model, self.goal_sites))  # no goal markers in a real scene
            if self.style is not None:
                stack.enter_context(
                    Randomizer.apply(self.model, self.style, keep=self.object_geoms, renderer=self.renderer))
            if edit is not None:
                kind, rng = edit
                record = stack.enter_context(
                    edit_object(self.model, self.object_geoms, kind, rng, renderer=self.renderer))
            pixels = self.renderer.render(self.env.data, camera)
        return pixels, dict(record)

    def close(self) -> None:
        self.pool.release(self.episode.task, self.env)


def region_points(episodes) -> np.ndarray:
    """The world points a task happens at in `episodes`: object(s), goal and fingertip paths."""
    points = []
    for episode in episodes:
        trace = episode.trace
        points += [trace.obj, trace.tcp, trace.goal[:1]]
        if np.abs(trace.obj2).sum() > 0:  # zeros when the task tracks one object
            points.append(trace.obj2)
    return np.concatenate(points)


FAMILY = MetaWorldFamily()
