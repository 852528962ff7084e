"""The panda family behind the family contract (`progresslm.sim.family`): panda-gym 3.0.7's scenes (a Franka Panda on
PyBullet: another physics engine and another renderer than Meta-World's and Fetch's MuJoCo), seven tasks with
scripted Cartesian experts (`panda.tasks`, `panda.rollout`), three free cameras and scenes rendered in a separate
render client per scene with the goal ghosts hidden (`panda.scene`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from progresslm.sim.family import STILL_M, CameraSet, TaskInfo, child_check, package_problem, pushed
from progresslm.sim.panda.rollout import SCENE_BODIES, rollout
from progresslm.sim.panda.scene import (
    EDIT_KINDS,
    PandaRenderer,
    camera_pose,
    camera_spec,
    frame_cameras,
    render_frame,
    sample_style,
)
from progresslm.sim.panda.tasks import PANDA_TASKS, get_panda_task

# Things no Panda scene holds (it has one or two cubes, a table and the robot).
ABSENT_OBJECTS = ("banana", "coffee mug", "tennis ball", "toy car", "sponge", "screwdriver", "red apple", "bottle")
CAMERAS = CameraSet(wide=("panda_wide", "panda_front"), close=("panda_close",), export=("panda_wide", "panda_close"))
# The task objects' colours (panda-gym's): distractors keep away from them.
OBJECT_RGB = {"object": (0.1, 0.9, 0.1), "object1": (0.1, 0.1, 0.9), "gripper": (0.9, 0.9, 0.9)}


class PandaFamily:
    name = "panda"
    extra = "panda"
    fps = 25.0  # panda-gym: 20 substeps of 2 ms per env step
    edit_kinds = EDIT_KINDS
    absent_objects = ABSENT_OBJECTS
    cameras = CAMERAS

    def tasks(self) -> dict[str, TaskInfo]:
        return {name: TaskInfo(name, self.name, t.goal, t.object_name, t.step_descriptions)
                for name, t in PANDA_TASKS.items()}  # fmt: skip

    def problem(self) -> str | None:
        """Why panda-gym cannot run here (a package missing, no frame renders), or None."""
        return package_problem(("pybullet", "panda_gym"), self.extra) or child_check(
            "from progresslm.sim.panda.scene import check_render; check_render()")

    def worker(self) -> PandaWorker:
        return PandaWorker()


class PandaWorker:
    """The render clients of one process (one per Panda scene), kept across units; rollouts make their own client."""

    def __init__(self):
        self.renderers: dict[str, PandaRenderer] = {}

    def rollout(self, task: str, seed: int, kind: str = "expert", stall_step: int | None = None):
        episode = rollout(task, seed, kind=kind, stall_step=stall_step)
        if kind == "expert" and stall_step is None and not episode.ok:
            return None
        if kind == "failure" and pushed(episode.trace) > STILL_M:  # the arm knocked the object: not a failure
            return None
        return episode

    def scene(self, episode, size: int, cameras: Sequence[str]) -> PandaScene:
        return PandaScene(episode, size, cameras, self)

    def sample_style(self, level: str, scene: PandaScene, rng: np.random.Generator):
        trace = scene.episode.trace
        every = max(len(trace) // 10, 1)
        avoid = [trace.goal[0][:2]] + [p[:2] for p in trace.tcp[::every]]
        if scene.task.has_object:
            avoid += [p[:2] for p in trace.obj[::every]] + [trace.obj[-1][:2]]
        if scene.task.scene == "stack":
            avoid.append(trace.other[0][:2])
        return sample_style(level, rng, avoid_xy=avoid, avoid_rgb=[OBJECT_RGB[scene.object_body or "gripper"]])

    def renderer(self, scene: str) -> PandaRenderer:
        if scene not in self.renderers:
            self.renderers[scene] = PandaRenderer(scene)
        return self.renderers[scene]

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()
        self.renderers.clear()


class PandaScene:
    """An episode's stored frames with the worker's render client of its task's scene, a style and a framing. Scenes
    of one unit share that client: each `render` poses its own episode's frame first."""

    def __init__(self, episode, size: int, cameras: Sequence[str], worker: PandaWorker):
        for camera in cameras:
            camera_spec(camera)  # an unknown name fails here, with the valid ones
        self.episode, self.size, self.cameras = episode, int(size), tuple(cameras)
        self.task = get_panda_task(episode.task)
        self.renderer = worker.renderer(self.task.scene)
        objects = SCENE_BODIES[self.task.scene][0]
        self.object_body = objects[0] if objects else None  # None: the gripper is the reach's object
        self.style = None
        self.framing = None

    def frame(self, episodes) -> None:
        """Aim each of the unit's cameras at the region where `episodes` happen, far enough to see all of it."""
        self.framing = frame_cameras(self.cameras, np.concatenate([e.region_points() for e in episodes]))

    def render(self, frame: int, camera: str, edit: tuple[str, np.random.Generator] | None = None):
        if self.framing is None:
            self.frame([self.episode])
        pose = camera_pose(self.framing, camera, self.style)
        return render_frame(self.renderer, self.episode.states[frame], pose, self.size, self.style, self.object_body,
                            edit)

    def close(self) -> None:
        pass  # the render client stays with the worker


FAMILY = PandaFamily()
