"""The Fetch family behind the family contract (`progresslm.sim.family`): gymnasium-robotics' `-v4` Fetch scenes (the
Fetch robot on MuJoCo), eight tasks with scripted Cartesian experts (`fetch.tasks`, `fetch.rollout`), three cameras
and scenes rendered through one renderer per env (`fetch.scene`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np

from progresslm.sim.family import STILL_M, CameraSet, TaskInfo, gl_problem, package_problem, pushed
from progresslm.sim.fetch.rollout import FetchEnvs, new_env, restore, rollout
from progresslm.sim.fetch.scene import FetchRenderer, apply_style, object_geoms, sample_style
from progresslm.sim.fetch.tasks import FETCH_TASKS, get_fetch_task
from progresslm.sim.mujoco_scene.edits import edit_object, object_colours
from progresslm.sim.mujoco_scene.framing import Framing, apply_framing, frame_cameras
from progresslm.sim.mujoco_scene.render import check_gl

# Things no Fetch scene holds (it has a block or a puck, a table and the robot).
ABSENT_OBJECTS = ("banana", "coffee mug", "tennis ball", "toy car", "sponge", "screwdriver", "red apple", "cup")
# external_camera_0 (shipped: above the table's far end, looking back at the robot) and fetch_wide (added: the whole
# robot, table and floor) are wide; fetch_close (added: low and oblique, 0.6 m from the table top) is close.
CAMERAS = CameraSet(wide=("external_camera_0", "fetch_wide"), close=("fetch_close",),
                    export=("external_camera_0", "fetch_close"))
# Every camera is aimed at the task's region (object, goal, fingertip paths) and zoomed until it fits with a margin:
# a small one for the close and the external camera, a large one for fetch_wide, which keeps robot and table in view
# (a 5-cm block must cover enough pixels that recolouring or hiding it shows).
FRAMING_MARGINS = {1.3: ("external_camera_0", "fetch_close"), 2.6: ("fetch_wide",)}
MIN_FOVY = 28.0  # degrees: framing never zooms further (the close camera would see little but the gripper)


class FetchFamily:
    name = "fetch"
    extra = "fetch"
    fps = 25.0  # gymnasium-robotics' Fetch: 20 substeps of 2 ms per env step
    edit_kinds = ("recolor", "hide", "replace")
    absent_objects = ABSENT_OBJECTS
    cameras = CAMERAS

    def tasks(self) -> dict[str, TaskInfo]:
        return {name: TaskInfo(name, self.name, t.goal, t.object_name, t.step_descriptions)
                for name, t in FETCH_TASKS.items()}  # fmt: skip

    def problem(self) -> str | None:
        """Why Fetch cannot run here (a package missing, no working offscreen GL), or None."""
        return package_problem(("mujoco", "gymnasium", "gymnasium_robotics"), self.extra) or gl_problem()

    def worker(self) -> FetchWorker:
        return FetchWorker()


class FetchWorker:
    """The envs of one process (one per Fetch scene, each with one renderer per size), kept across units."""

    def __init__(self):
        check_gl()

        self.envs = FetchEnvs()

    def rollout(self, task: str, seed: int, kind: str = "expert", stall_step: int | None = None):
        episode = rollout(task, seed, kind=kind, stall_step=stall_step, envs=self.envs)
        if kind == "expert" and stall_step is None and not episode.ok:
            return None
        if kind == "failure" and pushed(episode.trace) > STILL_M:  # the arm knocked the object: not a failure
            return None
        return episode

    def scene(self, episode, size: int, cameras: Sequence[str]) -> FetchScene:
        return FetchScene(episode, size, cameras, self)

    def sample_style(self, level: str, scene: FetchScene, rng: np.random.Generator):
        trace = scene.episode.trace
        avoid = [trace.goal[0][:2]] + [p[:2] for p in trace.tcp[:: max(len(trace) // 10, 1)]]
        if scene.has_object:
            avoid += [p[:2] for p in trace.obj[:: max(len(trace) // 10, 1)]] + [trace.obj[-1][:2]]
        return sample_style(level, rng, scene.model, avoid_xy=avoid,
                            avoid_rgb=object_colours(scene.model, scene.object_geoms))

    def renderer(self, env, size: int):
        renderers = env.__dict__.setdefault("_progresslm_renderers", {})
        renderer = renderers.get(size)
        if renderer is None:
            renderer = renderers[size] = FetchRenderer(env.model, size)
        else:
            renderer.resync()
        return renderer

    def close(self) -> None:
        self.envs.close()


class FetchScene:
    """An env restored to an episode's frames, with its renderer, style and framing. Scenes of one unit share the
    worker's env of their task's scene: each `render` restores its own episode's state first."""

    def __init__(self, episode, size: int, cameras: Sequence[str], worker: FetchWorker):
        self.episode, self.cameras = episode, tuple(cameras)
        self.task = get_fetch_task(episode.task)
        envs = worker.envs._envs
        if self.task.scene not in envs:
            envs[self.task.scene] = new_env(self.task)
        self.env = envs[self.task.scene]
        self.model = self.env.model
        self.renderer = worker.renderer(self.env, size)
        self.has_object = self.task.has_object
        self.object_geoms = object_geoms(self.model, self.has_object)
        self.style = None
        self.framing = None

    def frame(self, episodes) -> None:
        """Aim and zoom the unit's framed cameras at the region where `episodes` happen."""

        points = np.concatenate([e.region_points() for e in episodes])
        aimed = {}
        for margin, names in FRAMING_MARGINS.items():
            chosen = [c for c in self.cameras if c in names]
            if chosen:
                aimed.update(frame_cameras(self.model, chosen, points, margin=margin, min_fovy=MIN_FOVY).cameras)
        self.framing = Framing(aimed)

    def render(self, frame: int, camera: str, edit: tuple[str, np.random.Generator] | None = None):
        restore(self.env, self.episode.states[frame])
        record: dict = {}
        with ExitStack() as stack:
            stack.enter_context(apply_framing(self.model, self.framing))
            if self.style is not None:
                stack.enter_context(apply_style(self.model, self.style, self.renderer, keep=self.object_geoms))
            if edit is not None:
                kind, rng = edit
                record = stack.enter_context(
                    edit_object(self.model, self.object_geoms, kind, rng, renderer=self.renderer))
            pixels = self.renderer.render(self.env.data, camera)
        return pixels, dict(record)

    def close(self) -> None:
        pass  # the env and its renderer stay with the worker


FAMILY = FetchFamily()
