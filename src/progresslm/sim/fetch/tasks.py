"""Fetch tasks (gymnasium-robotics `-v4`, MuJoCo): goals, the task object's name and key steps ended by detectors on
the simulator state.

Each task runs on one of gymnasium-robotics' four Fetch scenes (`FetchReach`, `FetchPush`, `FetchSlide`,
`FetchPickAndPlace`, all `-v4`) with its own goal: the four shipped tasks keep the goal the env samples; the others
draw their own (`goal_kind`) and mean another job with other steps (lift and hold, place high, place and let go,
push to a corner). A key step ends at the first frame after the previous one where its detector is true on the
recorded state (`FetchTrace`: fingertip centre, finger opening, object and goal positions), never at a frame count;
the last step ends at the task's success. Nothing heavy is imported here.

>>> [s.description for s in get_fetch_task("fetch-pick-and-place").steps]
['reach the block', 'close the gripper on the block', 'lift the block off the table', 'carry the block to the target']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Scenes: gymnasium id of the env, the task object's words.
SCENES = {"reach": "FetchReach-v4", "push": "FetchPush-v4", "slide": "FetchSlide-v4", "pick": "FetchPickAndPlace-v4"}
TABLE_TOP = 0.4  # metres: the top of every Fetch table
BLOCK_HALF = 0.025  # the block's half-size (the puck's radius too)


@dataclass
class FetchTrace:
    """Per-frame state of an episode as arrays: (n, 3) positions, (n,) finger opening (metres between the fingers).

    `goal` is the task's goal point (constant over an episode); `obj` is zeros for a task without an object.
    """

    tcp: np.ndarray
    fingers: np.ndarray
    obj: np.ndarray
    goal: np.ndarray

    def __len__(self) -> int:
        return len(self.tcp)

    def speed(self, t: int) -> float:
        """The object's displacement since the previous frame, metres per step."""
        return 0.0 if t == 0 else float(np.linalg.norm(self.obj[t] - self.obj[t - 1]))


# A detector reads the trace up to frame t (it may look back, never ahead) and says whether its step has ended.
Detector = Callable[[FetchTrace, int], bool]


@dataclass(frozen=True)
class Check:
    """A named detector with its threshold, printable (so a task's steps can be read and reviewed)."""

    text: str
    test: Callable[[FetchTrace, int], bool] = field(compare=False)

    def __call__(self, trace: FetchTrace, t: int) -> bool:
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


def grasped(width: float = 0.056) -> Check:
    """Fingers closed on the block: opening below `width` (the block is 0.05 wide) with the block between them."""
    return Check(f"fingers < {width} and tcp_to_obj < 0.015",
                 lambda tr, t: tr.fingers[t] < width and _dist(tr.tcp[t], tr.obj[t]) < 0.015)


def lifted(height: float) -> Check:
    return Check(f"obj_lift > {height}", lambda tr, t: tr.obj[t][2] - tr.obj[0][2] > height)


def behind(dist: float, back: float) -> Check:
    """The fingertips on the far side of the object from the goal, `back` metres behind its centre (in xy)."""

    def test(tr: FetchTrace, t: int) -> bool:
        direction = tr.goal[t][:2] - tr.obj[t][:2]
        direction = direction / max(np.linalg.norm(direction), 1e-6)
        return _dist(tr.tcp[t][:2], tr.obj[t][:2] - back * direction) < dist

    return Check(f"tcp_xy_to_behind_obj({back}) < {dist}", test)


def low(height: float) -> Check:
    return Check(f"tcp_z - table < {height}", lambda tr, t: tr.tcp[t][2] - TABLE_TOP < height)


def all_of(*parts: Check) -> Check:
    return Check(" and ".join(f"({p})" for p in parts), lambda tr, t: all(p(tr, t) for p in parts))


def obj_moved(dist: float) -> Check:
    return Check(f"obj_moved > {dist}", lambda tr, t: _dist(tr.obj[t], tr.obj[0]) > dist)


def obj_to_goal(dist: float) -> Check:
    return Check(f"obj_to_goal < {dist}", lambda tr, t: _dist(tr.obj[t], tr.goal[t]) < dist)


def obj_xy_to_goal(dist: float) -> Check:
    return Check(f"obj_xy_to_goal < {dist}", lambda tr, t: _dist(tr.obj[t][:2], tr.goal[t][:2]) < dist)


def held(frames: int, height: float, still: float = 0.004) -> Check:
    """The object has stayed above `height` and moved less than `still` per step for the last `frames` frames."""

    def test(tr: FetchTrace, t: int) -> bool:
        if t < frames:
            return False
        window = range(t - frames + 1, t + 1)
        return all(tr.obj[k][2] - tr.obj[0][2] > height and tr.speed(k) < still for k in window)

    return Check(f"obj_lift > {height} and obj_speed < {still} for {frames} frames", test)


def released(width: float, clear: float) -> Check:
    """Fingers opened wide and the fingertips `clear` metres above the object (let go of)."""
    return Check(f"fingers > {width} and tcp_z - obj_z > {clear}",
                 lambda tr, t: tr.fingers[t] > width and tr.tcp[t][2] - tr.obj[t][2] > clear)


def at_rest(speed: float) -> Check:
    return Check(f"obj_speed < {speed}", lambda tr, t: tr.speed(t) < speed)


@dataclass(frozen=True)
class KeyStep:
    description: str
    detector: Check


@dataclass(frozen=True)
class FetchTask:
    """One Fetch task. `goal_kind` says where the goal comes from: `env` (gymnasium-robotics' own sampling), or one of
    `high` (0.2-0.35 m above the table), `table` (on the table, >= 0.12 m from the block), `corner` (the table's far
    left corner, +-2 cm), `ahead` (15-25 cm in front of the puck on the long slippery table), `hold` (0.2 m above the block's start). `expert` names the scripted policy."""

    name: str
    scene: str  # key of SCENES
    goal: str
    object_name: str
    steps: tuple[KeyStep, ...]
    expert: str  # reach | push | slide | pick | place
    goal_kind: str = "env"
    max_steps: int = 100

    @property
    def env_id(self) -> str:
        return SCENES[self.scene]

    @property
    def step_descriptions(self) -> tuple[str, ...]:
        return tuple(s.description for s in self.steps)

    @property
    def has_object(self) -> bool:
        return self.scene != "reach"


def _tasks() -> dict[str, FetchTask]:
    block, puck = "block", "puck"
    reach, grasp, lift = tcp_to_obj(0.015), grasped(), lifted(0.03)
    push_steps = (
        KeyStep("move the gripper behind the block", behind(0.02, 0.055)),
        KeyStep("lower the gripper to the table", all_of(low(0.035), behind(0.025, 0.055))),
    )
    tasks = [
        FetchTask("fetch-reach", "reach", "Move the gripper to the target point", "gripper", (
            KeyStep("move the gripper above the target point", tcp_xy_to_goal(0.015, 0.03)),
            KeyStep("lower the gripper onto the target point", tcp_to_goal(0.015)),
        ), expert="reach", max_steps=60),
        FetchTask("fetch-push", "push", "Push the block to the target on the table", block, push_steps + (
            KeyStep("push the block to the target", obj_xy_to_goal(0.03)),
        ), expert="push"),
        FetchTask("fetch-push-corner", "push", "Push the block into the far left corner of the table", block,
                  push_steps + (
            KeyStep("push the block halfway to the corner", Check("goal_share > 0.5", lambda tr, t: _dist(
                tr.obj[t][:2], tr.goal[t][:2]) < 0.5 * _dist(tr.obj[0][:2], tr.goal[t][:2]))),
            KeyStep("push the block into the corner", obj_xy_to_goal(0.03)),
        ), expert="push", goal_kind="corner", max_steps=120),
        FetchTask("fetch-puck-push", "slide", "Push the puck along the slippery table to the target", puck, (
            KeyStep("move the gripper behind the puck", behind(0.02, 0.05)),
            KeyStep("lower the gripper to the table", all_of(low(0.03), behind(0.025, 0.05))),
            KeyStep("push the puck to the target and let it come to rest", all_of(obj_xy_to_goal(0.03), at_rest(0.002))),
        ), expert="push", goal_kind="ahead", max_steps=180),
        FetchTask("fetch-pick-and-place", "pick", "Pick up the block and put it at the target", block, (
            KeyStep("reach the block", reach),
            KeyStep("close the gripper on the block", grasp),
            KeyStep("lift the block off the table", lift),
            KeyStep("carry the block to the target", obj_to_goal(0.02)),
        ), expert="pick"),
        FetchTask("fetch-lift-and-hold", "pick", "Lift the block high above the table and hold it still", block, (
            KeyStep("reach the block", reach),
            KeyStep("close the gripper on the block", grasp),
            KeyStep("lift the block high above the table", lifted(0.18)),
            KeyStep("hold the block still in the air", held(8, 0.18)),
        ), expert="pick", goal_kind="hold"),
        FetchTask("fetch-place-high", "pick", "Put the block on a spot high in the air above the table", block, (
            KeyStep("reach the block", reach),
            KeyStep("close the gripper on the block", grasp),
            KeyStep("lift the block off the table", lift),
            KeyStep("raise the block to the height of the target", Check(
                "obj_z > goal_z - 0.03", lambda tr, t: tr.obj[t][2] > tr.goal[t][2] - 0.03)),
            KeyStep("carry the block to the target", obj_to_goal(0.02)),
        ), expert="pick", goal_kind="high"),
        FetchTask("fetch-place-and-release", "pick", "Move the block to the target on the table and let go of it",
                  block, (
            KeyStep("reach the block", reach),
            KeyStep("close the gripper on the block", grasp),
            KeyStep("lift the block off the table", lift),
            KeyStep("carry the block over the target", all_of(obj_xy_to_goal(0.02), lifted(0.03))),
            KeyStep("lower the block onto the table", all_of(obj_to_goal(0.02), Check(
                "obj on table", lambda tr, t: tr.obj[t][2] - TABLE_TOP < BLOCK_HALF + 0.005))),
            KeyStep("open the gripper and move it away", all_of(obj_to_goal(0.02), released(0.08, 0.06))),
        ), expert="place", goal_kind="table", max_steps=120),
    ]
    return {t.name: t for t in tasks}


FETCH_TASKS: dict[str, FetchTask] = _tasks()


def get_fetch_task(name: str) -> FetchTask:
    if name not in FETCH_TASKS:
        raise ValueError(f"unknown Fetch task {name!r}; valid tasks: {', '.join(FETCH_TASKS)}")
    return FETCH_TASKS[name]
