"""Panda tasks (panda-gym 3.0.7 on PyBullet): goals, the task object's name and key steps ended by detectors on the
simulator state.

Each task runs on one of panda-gym's scenes (`PandaReach`, `PandaPush`, `PandaPickAndPlace`, `PandaStack`: a Franka
Panda at the end of a white table, cubes 4 cm wide, the table top at z = 0) with its own goal (`goal_kind`): the
Reach and Push scenes keep the goal panda-gym samples, the others draw their own and mean another job with other
steps (pull back, lift and hold, place high, stack). A key step ends at the first frame after the previous one where
its detector is true on the recorded state (`PandaTrace`: fingertip centre, finger opening, object, goal), never at
a frame count; the last step ends at the task's success. Nothing heavy is imported here.

>>> [s.description for s in get_panda_task("panda-pick-and-place").steps]
['reach the cube', 'close the gripper on the cube', 'lift the cube off the table', 'carry the cube to the target']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SCENES = ("reach", "push", "pick", "stack")  # panda-gym's PandaReach, PandaPush, PandaPickAndPlace, PandaStack
TABLE_TOP = 0.0  # metres: panda-gym's table top
CUBE_HALF = 0.02  # every cube is 4 cm wide


@dataclass
class PandaTrace:
    """Per-frame state of an episode as arrays: (n, 3) positions, (n,) finger opening (metres between the fingers).

    `goal` is the task's goal point (constant over an episode); `obj` is zeros for a task without an object; `other`
    is the second cube of the stack scene (zeros elsewhere)."""

    tcp: np.ndarray
    fingers: np.ndarray
    obj: np.ndarray
    goal: np.ndarray
    other: np.ndarray

    def __len__(self) -> int:
        return len(self.tcp)

    def speed(self, t: int) -> float:
        """The object's displacement since the previous frame, metres per step."""
        return 0.0 if t == 0 else float(np.linalg.norm(self.obj[t] - self.obj[t - 1]))


@dataclass(frozen=True)
class Check:
    """A named detector with its threshold, printable (so a task's steps can be read and reviewed). It reads the trace
    up to frame t (it may look back, never ahead) and says whether its step has ended."""

    text: str
    test: Callable[[PandaTrace, int], bool] = field(compare=False)

    def __call__(self, trace: PandaTrace, t: int) -> bool:
        return bool(self.test(trace, t))

    def __str__(self) -> str:
        return self.text


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def tcp_to_obj(dist: float) -> Check:
    return Check(f"tcp_to_obj < {dist}", lambda tr, t: _dist(tr.tcp[t], tr.obj[t]) < dist)


def tcp_xy_to_goal(dist: float, above: float = 0.0) -> Check:
    return Check(f"tcp_xy_to_goal < {dist} and tcp_z - goal_z > {above}",
                 lambda tr, t: _dist(tr.tcp[t][:2], tr.goal[t][:2]) < dist and tr.tcp[t][2] - tr.goal[t][2] > above)


def tcp_to_goal(dist: float) -> Check:
    return Check(f"tcp_to_goal < {dist}", lambda tr, t: _dist(tr.tcp[t], tr.goal[t]) < dist)


def grasped(width: float = 0.045) -> Check:
    """Fingers closed on the cube: opening below `width` (the cube is 0.04 wide) with the cube between them."""
    return Check(f"fingers < {width} and tcp_to_obj < 0.02",
                 lambda tr, t: tr.fingers[t] < width and _dist(tr.tcp[t], tr.obj[t]) < 0.02)


def lifted(height: float) -> Check:
    return Check(f"obj_lift > {height}", lambda tr, t: tr.obj[t][2] - tr.obj[0][2] > height)


def behind(dist: float, back: float) -> Check:
    """The fingertips on the far side of the object from the goal, `back` metres behind its centre (in xy)."""

    def test(tr: PandaTrace, t: int) -> bool:
        direction = tr.goal[t][:2] - tr.obj[t][:2]
        direction = direction / max(np.linalg.norm(direction), 1e-6)
        return _dist(tr.tcp[t][:2], tr.obj[t][:2] - back * direction) < dist

    return Check(f"tcp_xy_to_behind_obj({back}) < {dist}", test)


def low(height: float) -> Check:
    return Check(f"tcp_z - table < {height}", lambda tr, t: tr.tcp[t][2] - TABLE_TOP < height)


def all_of(*parts: Check) -> Check:
    return Check(" and ".join(f"({p})" for p in parts), lambda tr, t: all(p(tr, t) for p in parts))


def obj_to_goal(dist: float) -> Check:
    return Check(f"obj_to_goal < {dist}", lambda tr, t: _dist(tr.obj[t], tr.goal[t]) < dist)


def obj_xy_to_goal(dist: float) -> Check:
    return Check(f"obj_xy_to_goal < {dist}", lambda tr, t: _dist(tr.obj[t][:2], tr.goal[t][:2]) < dist)


def held(frames: int, height: float, still: float = 0.004) -> Check:
    """The object has stayed above `height` and moved less than `still` per step for the last `frames` frames."""

    def test(tr: PandaTrace, t: int) -> bool:
        if t < frames:
            return False
        window = range(t - frames + 1, t + 1)
        return all(tr.obj[k][2] - tr.obj[0][2] > height and tr.speed(k) < still for k in window)

    return Check(f"obj_lift > {height} and obj_speed < {still} for {frames} frames", test)


def released(width: float, clear: float) -> Check:
    """Fingers opened wide and the fingertips `clear` metres above the object (let go of)."""
    return Check(f"fingers > {width} and tcp_z - obj_z > {clear}",
                 lambda tr, t: tr.fingers[t] > width and tr.tcp[t][2] - tr.obj[t][2] > clear)


def on_other(dist: float) -> Check:
    """The cube resting on top of the other cube: within `dist` of the point one cube above it."""
    return Check(f"obj_to_top_of_other < {dist}",
                 lambda tr, t: _dist(tr.obj[t], tr.other[t] + (0.0, 0.0, 2 * CUBE_HALF)) < dist)


@dataclass(frozen=True)
class KeyStep:
    description: str
    detector: Check


@dataclass(frozen=True)
class PandaTask:
    """One Panda task. `goal_kind` says where the goal comes from: `env` (panda-gym's own sampling), or one of `back`
    (on the table 12-18 cm nearer the robot than the cube), `hold` (0.15 m above the cube's start), `high` (0.12-0.22 m
    above the table), `air` (pick-and-place: on the table or up to 0.15 m above it, >= 0.1 m from the cube), `stack`
    (on top of the green cube). `expert` names the scripted policy."""

    name: str
    scene: str  # one of SCENES
    goal: str
    object_name: str
    steps: tuple[KeyStep, ...]
    expert: str  # reach | push | pick | place
    goal_kind: str = "env"
    max_steps: int = 100

    @property
    def step_descriptions(self) -> tuple[str, ...]:
        return tuple(s.description for s in self.steps)

    @property
    def has_object(self) -> bool:
        return self.scene != "reach"


def _tasks() -> dict[str, PandaTask]:
    cube = "cube"
    reach, grasp, lift = tcp_to_obj(0.012), grasped(), lifted(0.03)
    tasks = [
        PandaTask("panda-reach", "reach", "Move the gripper to the target point in the air", "gripper", (
            KeyStep("move the gripper above the target point", tcp_xy_to_goal(0.015, 0.03)),
            KeyStep("lower the gripper onto the target point", tcp_to_goal(0.015)),
        ), expert="reach", max_steps=60),
        PandaTask("panda-push", "push", "Push the cube across the table to the target", cube, (
            KeyStep("move the gripper behind the cube", behind(0.02, 0.05)),
            KeyStep("lower the gripper to the table", all_of(low(0.03), behind(0.025, 0.05))),
            KeyStep("push the cube to the target", obj_xy_to_goal(0.03)),
        ), expert="push"),
        PandaTask("panda-pull-back", "push", "Pull the cube back toward the robot", cube, (
            KeyStep("move the gripper beyond the cube", behind(0.02, 0.05)),
            KeyStep("lower the gripper to the table", all_of(low(0.03), behind(0.025, 0.05))),
            KeyStep("pull the cube back toward the robot", obj_xy_to_goal(0.03)),
        ), expert="push", goal_kind="back"),
        PandaTask("panda-pick-and-place", "pick", "Pick up the cube and put it at the target", cube, (
            KeyStep("reach the cube", reach),
            KeyStep("close the gripper on the cube", grasp),
            KeyStep("lift the cube off the table", lift),
            KeyStep("carry the cube to the target", obj_to_goal(0.02)),
        ), expert="pick", goal_kind="air"),
        PandaTask("panda-lift-and-hold", "pick", "Lift the cube high above the table and hold it still", cube, (
            KeyStep("reach the cube", reach),
            KeyStep("close the gripper on the cube", grasp),
            KeyStep("lift the cube high above the table", lifted(0.12)),
            KeyStep("hold the cube still in the air", held(8, 0.12)),
        ), expert="pick", goal_kind="hold"),
        PandaTask("panda-place-high", "pick", "Put the cube on a spot high in the air above the table", cube, (
            KeyStep("reach the cube", reach),
            KeyStep("close the gripper on the cube", grasp),
            KeyStep("lift the cube off the table", lift),
            KeyStep("raise the cube to the height of the target", Check(
                "obj_z > goal_z - 0.03", lambda tr, t: tr.obj[t][2] > tr.goal[t][2] - 0.03)),
            KeyStep("carry the cube to the target", obj_to_goal(0.02)),
        ), expert="pick", goal_kind="high"),
        PandaTask("panda-stack", "stack", "Put the blue cube on top of the green cube", "blue cube", (
            KeyStep("reach the blue cube", reach),
            KeyStep("close the gripper on the blue cube", grasp),
            KeyStep("lift the blue cube off the table", lift),
            KeyStep("carry the blue cube over the green cube", all_of(obj_xy_to_goal(0.015), lifted(0.03))),
            KeyStep("lower the blue cube onto the green cube", on_other(0.012)),
            KeyStep("open the gripper and move it away", all_of(on_other(0.015), released(0.06, 0.05))),
        ), expert="place", goal_kind="stack", max_steps=140),
    ]
    return {t.name: t for t in tasks}


PANDA_TASKS: dict[str, PandaTask] = _tasks()


def get_panda_task(name: str) -> PandaTask:
    if name not in PANDA_TASKS:
        raise ValueError(f"unknown Panda task {name!r}; valid tasks: {', '.join(PANDA_TASKS)}")
    return PANDA_TASKS[name]
