"""Meta-World v3 tasks with their key steps, each step ended by a detector on the simulator state.

A task's key steps split one scripted execution into T parts. Step k ends at the first frame, after
step k-1 ended, at which its detector is true; the last step always ends at the env's success
signal. Detectors are small pure callables on a `SimState` snapshot (positions, gripper opening,
joint displacement, the env's `info` fields), never frame counts, so a keyframe marks where a step
really ends. The thresholds were picked with `experiments/sim_success.py` (every registered task
keeps at least 80 % of its seeds with all steps detected and no step shorter than 2 frames).

Nothing heavy is imported here: listing tasks needs neither mujoco nor metaworld.

>>> task = get_task("pick-place-v3")
>>> [step.description for step in task.steps]
['reach the puck', 'grasp and lift the puck', 'move the puck to the goal']
>>> str(task.steps[0].detector)
'tcp_to_obj < 0.02'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from progresslm.sim import family

# --------------------------------------------------------------------------- state seen by detectors


@dataclass(frozen=True)
class SimState:
    """What a key-step detector may look at in one frame; built by `progresslm.sim.metaworld.rollout`.

    Positions are world coordinates in metres. `obj` and `obj2` are the points Meta-World tracks for
    the task (its observation's object slots: a puck's centre, a drawer's handle, a stick and the
    thermos it pushes); `*_init` are their values at frame 0. The info fields are those of the
    env's `step` (all false / zero at frame 0).
    """

    hand: np.ndarray
    tcp: np.ndarray  # centre between the two finger pads
    gripper: float  # opening: 1 open, ~0.3 closed on nothing
    obj: np.ndarray
    obj2: np.ndarray  # zeros when the task tracks one object
    goal: np.ndarray
    obj_init: np.ndarray
    obj2_init: np.ndarray
    joint: float  # displacement of the task's joint since frame 0 (m or rad; 0 without a joint)
    success: bool = False
    near_object: bool = False
    grasp_success: bool = False
    obj_to_target: float = 0.0
    in_place_reward: float = 0.0
    grasp_reward: float = 0.0

    @property
    def tcp_to_obj(self) -> float:
        return float(np.linalg.norm(self.tcp - self.obj))

    @property
    def hand_to_obj(self) -> float:
        return float(np.linalg.norm(self.hand - self.obj))

    @property
    def obj_lift(self) -> float:
        """Height of the object above where it started."""
        return float(self.obj[2] - self.obj_init[2])

    @property
    def obj_z(self) -> float:
        return float(self.obj[2])

    @property
    def obj_moved(self) -> float:
        return float(np.linalg.norm(self.obj - self.obj_init))

    @property
    def obj2_moved(self) -> float:
        return float(np.linalg.norm(self.obj2 - self.obj2_init))

    @property
    def obj_to_goal(self) -> float:
        return float(np.linalg.norm(self.obj - self.goal))

    @property
    def obj_xy_to_goal(self) -> float:
        return float(np.linalg.norm(self.obj[:2] - self.goal[:2]))

    @property
    def goal_progress(self) -> float:
        """Share of the object's starting distance to the goal covered so far (may be negative)."""
        start = float(np.linalg.norm(self.obj_init - self.goal))
        return 1.0 - self.obj_to_goal / max(start, 1e-6)

    @property
    def joint_moved(self) -> float:
        return abs(self.joint)


QUANTITIES = (
    "tcp_to_obj", "hand_to_obj", "obj_lift", "obj_z", "obj_moved", "obj2_moved", "obj_to_goal",
    "obj_xy_to_goal", "goal_progress", "joint_moved", "gripper", "success", "near_object",
    "grasp_success", "obj_to_target", "in_place_reward", "grasp_reward",
)  # fmt: skip

# --------------------------------------------------------------------------- detectors


class Detector(Protocol):
    def __call__(self, state: SimState) -> bool: ...


@dataclass(frozen=True)
class Threshold:
    """True when a named `SimState` quantity is below (`<`) or above (`>`) a value.

    >>> s = SimState(np.zeros(3), np.zeros(3), 1.0, np.array([0, 0, .05]), np.zeros(3), np.ones(3),
    ...              np.zeros(3), np.zeros(3), 0.0)
    >>> Threshold("obj_lift", ">", 0.02)(s), Threshold("tcp_to_obj", "<", 0.02)(s)
    (True, False)
    """

    quantity: str
    op: Literal["<", ">"]
    value: float

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown SimState quantity {self.quantity!r}; valid: {', '.join(QUANTITIES)}")
        if self.op not in ("<", ">"):
            raise ValueError(f"threshold operator must be '<' or '>', got {self.op!r}")

    def __call__(self, state: SimState) -> bool:
        value = float(getattr(state, self.quantity))
        return value < self.value if self.op == "<" else value > self.value

    def __str__(self) -> str:
        return f"{self.quantity} {self.op} {self.value:g}"


@dataclass(frozen=True)
class AllOf:
    """True when every part is true."""

    parts: tuple[Detector, ...]

    def __call__(self, state: SimState) -> bool:
        return all(part(state) for part in self.parts)

    def __str__(self) -> str:
        return " and ".join(str(part) for part in self.parts)


def below(quantity: str, value: float) -> Threshold:
    return Threshold(quantity, "<", value)


def above(quantity: str, value: float) -> Threshold:
    return Threshold(quantity, ">", value)


def all_of(*parts: Detector) -> AllOf:
    return AllOf(tuple(parts))


SUCCESS = above("success", 0.5)

# --------------------------------------------------------------------------- task specs


@dataclass(frozen=True)
class KeyStep:
    description: str
    detector: Detector


@dataclass(frozen=True)
class TaskSpec:
    """One Meta-World task: its goal sentence, task object and key steps.

    `object_geoms` are named geoms of the task object; `object_bodies` are bodies whose whole subtree
    belongs to the object (Meta-World leaves most visible geoms unnamed, so the body is the handle
    for recolouring or hiding it). `object_geom_ids` resolves both to geom ids in a model.
    `joint` names the task's hinge or slide joint when there is one (`SimState.joint`).
    """

    name: str
    goal: str
    object_name: str
    steps: tuple[KeyStep, ...]
    object_geoms: tuple[str, ...] = ()
    object_bodies: tuple[str, ...] = ()
    joint: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if len(self.steps) < 3:
            raise ValueError(f"{where} has {len(self.steps)} key steps; at least 3 are needed")
        if self.steps[-1].detector != SUCCESS:
            raise ValueError(f"{where}: the last key step must end at success (detector SUCCESS)")
        if not (self.object_geoms or self.object_bodies):
            raise ValueError(f"{where} names no object geoms or bodies")
        texts = [self.goal] + [step.description for step in self.steps]
        if not any(self.object_name in text for text in texts):
            raise ValueError(f"{where}: object name {self.object_name!r} appears in neither goal nor steps")

    @property
    def step_descriptions(self) -> list[str]:
        return [step.description for step in self.steps]


def object_geom_ids(model: Any, task: TaskSpec) -> list[int]:
    """Ids of every geom of the task object in a MuJoCo `model`: named geoms plus body subtrees."""
    ids = {model.geom(name).id for name in task.object_geoms}
    roots = {model.body(name).id for name in task.object_bodies}
    for geom in range(model.ngeom):
        body = int(model.geom_bodyid[geom])
        while body > 0:  # climb to the world body (id 0)
            if body in roots:
                ids.add(geom)
                break
            body = int(model.body_parentid[body])
    return sorted(ids)


# Detector shorthands for the table below.
def _reach(dist: float) -> Threshold:  # fingertips within `dist` of the tracked point
    return below("tcp_to_obj", dist)


def _lift(height: float) -> Threshold:
    return above("obj_lift", height)


def _moved(dist: float) -> Threshold:
    return above("obj_moved", dist)


def _toward_goal(share: float) -> Threshold:
    return above("goal_progress", share)


def _turned(amount: float) -> Threshold:
    return above("joint_moved", amount)


def _task(
    name: str,
    goal: str,
    object_name: str,
    steps: list[tuple[str, Detector]],
    *,
    geoms: tuple[str, ...] = (),
    bodies: tuple[str, ...] = (),
    joint: str | None = None,
    notes: str = "",
) -> TaskSpec:
    return TaskSpec(
        name=name,
        goal=goal,
        object_name=object_name,
        steps=tuple(KeyStep(text, detector) for text, detector in steps),
        object_geoms=geoms,
        object_bodies=bodies,
        joint=joint,
        notes=notes,
    )


_SPECS: list[TaskSpec] = [
    # ---- pick and place
    _task("pick-place-v3", "pick up the puck and place it at the goal", "puck", [
        ("reach the puck", _reach(0.02)),
        ("grasp and lift the puck", _lift(0.02)),
        ("move the puck to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("pick-place-wall-v3", "pick up the puck, carry it over the wall and place it at the goal", "puck", [
        ("reach the puck", _reach(0.02)),
        ("grasp and lift the puck", _lift(0.03)),
        ("raise the puck above the wall", _lift(0.15)),
        ("carry the puck over the wall to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("shelf-place-v3", "pick up the block and place it on the shelf", "block", [
        ("reach the block", _reach(0.02)),
        ("grasp and lift the block", _lift(0.03)),
        ("raise the block to the height of the shelf", _lift(0.2)),
        ("put the block on the shelf", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("bin-picking-v3", "pick up the cube and drop it into the other bin", "cube", [
        ("reach the cube", _reach(0.02)),
        ("grasp and lift the cube", _lift(0.04)),
        ("carry the cube over the other bin", below("obj_xy_to_goal", 0.05)),
        ("lower the cube into the other bin", SUCCESS),
    ], bodies=("obj",)),
    _task("basketball-v3", "pick up the ball and dunk it into the basket", "ball", [
        ("reach the ball", _reach(0.02)),
        ("grasp and lift the ball", _lift(0.04)),
        ("dunk the ball into the basket", SUCCESS),
    ], geoms=("objGeom",), bodies=("bsktball",)),
    _task("pick-out-of-hole-v3", "pick the peg out of the hole and move it to the goal", "peg", [
        ("reach the peg in the hole", _reach(0.03)),
        ("grasp the peg and lift it out of the hole", _lift(0.04)),
        ("move the peg to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("assembly-v3", "pick up the nut and fit it onto the peg", "nut", [
        ("reach the handle of the nut", _reach(0.02)),
        ("grasp and lift the nut", _lift(0.05)),
        ("fit the nut onto the peg", SUCCESS),
    ], geoms=("WrenchHandle",), bodies=("RoundNut",)),
    _task("disassemble-v3", "grasp the nut and pull it off the peg", "nut", [
        ("reach the handle of the nut", _reach(0.03)),
        ("grasp the nut and start lifting it", _lift(0.03)),
        ("pull the nut off the peg", SUCCESS),
    ], geoms=("WrenchHandle",), bodies=("RoundNut",)),
    _task("hammer-v3", "pick up the hammer and drive the nail in with it", "hammer", [
        ("reach the hammer", _reach(0.04)),
        ("grasp and lift the hammer", _lift(0.05)),
        ("swing the hammer against the nail", above("obj2_moved", 0.005)),
        ("drive the nail in", SUCCESS),
    ], geoms=("HammerHandle", "HammerHead"), bodies=("hammerbody",), joint="NailSlideJoint"),
    _task("peg-insert-side-v3", "pick up the peg and insert it into the hole from the side", "peg", [
        ("reach the peg", _reach(0.02)),
        ("grasp and lift the peg", _lift(0.05)),
        ("insert the peg into the hole", SUCCESS),
    ], geoms=("peg",), bodies=("peg",)),
    _task("box-close-v3", "pick up the lid and put it on the box", "lid", [
        ("reach the lid", _reach(0.03)),
        ("grasp and lift the lid", above("obj_z", 0.06)),
        ("put the lid on the box", SUCCESS),
    ], geoms=("BoxHandleGeom",), bodies=("boxbodytop",),
       notes="the lid drops onto the table when the episode starts, so lifting uses its height"),
    # ---- tools
    _task("stick-push-v3", "pick up the stick and push the thermos to the goal with it", "stick", [
        ("reach the stick", _reach(0.03)),
        ("grasp and lift the stick", _lift(0.03)),
        ("touch the thermos with the stick", above("obj2_moved", 0.01)),
        ("push the thermos to the goal", SUCCESS),
    ], bodies=("stick",)),
    _task("stick-pull-v3", "pick up the stick, hook the thermos with it and pull it to the goal", "stick", [
        ("reach the stick", _reach(0.03)),
        ("grasp and lift the stick", _lift(0.03)),
        ("hook the thermos with the stick", above("obj2_moved", 0.01)),
        ("pull the thermos to the goal", SUCCESS),
    ], bodies=("stick",)),
    # ---- pushing and sliding
    _task("push-v3", "push the puck to the goal", "puck", [
        ("reach the puck", _reach(0.02)),
        ("push the puck halfway to the goal", _toward_goal(0.35)),
        ("push the puck to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("push-wall-v3", "push the puck around the wall to the goal", "puck", [
        ("reach the puck", _reach(0.02)),
        ("push the puck around the wall", _moved(0.1)),
        ("push the puck to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("push-back-v3", "push the puck back to the goal", "puck", [
        ("reach the puck", _reach(0.02)),
        ("push the puck halfway back to the goal", _toward_goal(0.3)),
        ("push the puck to the goal", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("sweep-v3", "sweep the cube off the edge of the table", "cube", [
        ("reach the cube", _reach(0.02)),
        ("grasp the cube", all_of(_reach(0.03), below("gripper", 0.5))),
        ("sweep the cube halfway to the edge", _toward_goal(0.4)),
        ("sweep the cube off the edge", SUCCESS),
    ], bodies=("obj",)),
    _task("sweep-into-v3", "sweep the cube into the hole", "cube", [
        ("reach the cube", _reach(0.02)),
        ("sweep the cube halfway to the hole", _toward_goal(0.35)),
        ("sweep the cube into the hole", SUCCESS),
    ], geoms=("objGeom",), bodies=("obj",)),
    _task("soccer-v3", "push the ball into the goal", "ball", [
        ("reach the ball", _reach(0.05)),  # the closed fist pushes it: fingertips stay ~4 cm away
        ("push the ball halfway to the goal", _toward_goal(0.3)),
        ("push the ball into the goal", SUCCESS),
    ], bodies=("soccer_ball",)),
    _task("plate-slide-v3", "slide the plate into the goal", "plate", [
        ("reach the plate", _moved(0.005)),
        ("slide the plate halfway to the goal", _toward_goal(0.35)),
        ("slide the plate into the goal", SUCCESS),
    ], geoms=("puck",), bodies=("puck_channel",)),
    _task("plate-slide-side-v3", "slide the plate sideways into the goal", "plate", [
        ("reach the plate", _moved(0.005)),
        ("slide the plate halfway to the goal", _toward_goal(0.35)),
        ("slide the plate into the goal", SUCCESS),
    ], geoms=("puck",), bodies=("puck_channel",)),
    _task("plate-slide-back-v3", "slide the plate back into the goal", "plate", [
        ("reach the plate", _moved(0.005)),
        ("slide the plate halfway back to the goal", _toward_goal(0.25)),
        ("slide the plate into the goal", SUCCESS),
    ], geoms=("puck",), bodies=("puck_channel",)),
    _task("plate-slide-back-side-v3", "slide the plate sideways back into the goal", "plate", [
        ("reach the plate", _moved(0.005)),
        ("slide the plate halfway back to the goal", _toward_goal(0.2)),
        ("slide the plate into the goal", SUCCESS),
    ], geoms=("puck",), bodies=("puck_channel",)),
    _task("coffee-pull-v3", "pull the mug out from under the coffee machine to the goal", "mug", [
        ("reach the mug", _reach(0.03)),
        ("pull the mug halfway to the goal", _toward_goal(0.25)),
        ("pull the mug to the goal", SUCCESS),
    ], geoms=("mug",), bodies=("obj",)),
    _task("coffee-push-v3", "push the mug under the coffee machine", "mug", [
        ("reach the mug", _reach(0.03)),
        ("push the mug halfway to the coffee machine", _toward_goal(0.25)),
        ("push the mug under the coffee machine", SUCCESS),
    ], geoms=("mug",), bodies=("obj",)),
    # ---- articulated objects
    _task("drawer-open-v3", "pull the drawer open", "drawer", [
        ("reach the drawer handle", _reach(0.03)),
        ("pull the drawer halfway open", _turned(0.08)),
        ("pull the drawer fully open", SUCCESS),
    ], geoms=("objGeom",), bodies=("drawer_link",), joint="goal_slidey"),
    _task("drawer-close-v3", "push the drawer closed", "drawer", [
        ("reach the drawer", _turned(0.015)),
        ("push the drawer halfway closed", _turned(0.07)),
        ("push the drawer fully closed", SUCCESS),
    ], geoms=("objGeom",), bodies=("drawer_link",), joint="goal_slidey"),
    _task("door-open-v3", "pull the door open", "door", [
        ("reach the door handle", _reach(0.04)),
        ("pull the door partly open", _moved(0.2)),
        ("swing the door fully open", SUCCESS),
    ], geoms=("handle",), bodies=("door_link",), joint="doorjoint"),
    _task("door-unlock-v3", "turn the lock to unlock the door", "lock", [
        ("reach the lock", _moved(0.005)),
        ("start turning the lock", _moved(0.03)),
        ("turn the lock open", SUCCESS),
    ], bodies=("lock_link",)),
    _task("window-open-v3", "slide the window open", "window", [
        ("reach the window handle", _turned(0.01)),
        ("slide the window halfway open", _turned(0.1)),
        ("slide the window fully open", SUCCESS),
    ], bodies=("window",), joint="window_slide"),
    _task("window-close-v3", "slide the window closed", "window", [
        ("reach the window handle", _turned(0.01)),
        ("slide the window halfway closed", _turned(0.1)),
        ("slide the window fully closed", SUCCESS),
    ], bodies=("window",), joint="window_slide"),
    _task("faucet-open-v3", "turn the faucet handle to open the faucet", "faucet", [
        ("reach the faucet handle", below("hand_to_obj", 0.05)),
        ("turn the faucet handle halfway", _moved(0.1)),
        ("turn the faucet fully open", SUCCESS),
    ], bodies=("faucetBase",), joint="knob_Joint_1"),
    _task("faucet-close-v3", "turn the faucet handle to close the faucet", "faucet", [
        ("reach the faucet handle", below("hand_to_obj", 0.05)),
        ("turn the faucet handle halfway", _moved(0.1)),
        ("turn the faucet fully closed", SUCCESS),
    ], bodies=("faucetBase",), joint="knob_Joint_1"),
    _task("dial-turn-v3", "turn the dial", "dial", [
        ("reach the dial", _moved(0.005)),
        ("turn the dial partway", _moved(0.03)),
        ("turn the dial all the way", SUCCESS),
    ], bodies=("dial",), joint="knob_Joint_1"),
    _task("lever-pull-v3", "pull the lever up", "lever", [
        ("reach the lever", _moved(0.005)),
        ("raise the lever halfway", _moved(0.13)),
        ("pull the lever all the way up", SUCCESS),
    ], geoms=("objGeom",), bodies=("lever",), joint="LeverAxis"),
    _task("handle-pull-v3", "pull the handle up", "handle", [
        ("reach the handle", below("hand_to_obj", 0.045)),
        ("pull the handle partway up", _moved(0.03)),
        ("pull the handle all the way up", SUCCESS),
    ], bodies=("hdlprs",)),
    _task("handle-pull-side-v3", "pull the handle up from the side", "handle", [
        ("reach the handle", below("hand_to_obj", 0.03)),
        ("pull the handle partway up", _moved(0.03)),
        ("pull the handle all the way up", SUCCESS),
    ], bodies=("hdlprs",)),
    _task("handle-press-side-v3", "press the handle down from the side", "handle", [
        ("reach the handle", _reach(0.03)),
        ("press the handle partway down", _moved(0.04)),
        ("press the handle all the way down", SUCCESS),
    ], bodies=("hdlprs",)),
    _task("button-press-v3", "press the button", "button", [
        ("reach the button", _turned(0.003)),
        ("push the button halfway in", _turned(0.035)),
        ("press the button all the way in", SUCCESS),
    ], geoms=("btnGeom",), bodies=("button",), joint="btnbox_joint"),
    _task("button-press-wall-v3", "press the button behind the wall", "button", [
        ("reach the button", _turned(0.003)),
        ("push the button halfway in", _turned(0.035)),
        ("press the button all the way in", SUCCESS),
    ], geoms=("btnGeom",), bodies=("button",), joint="btnbox_joint"),
    _task("button-press-topdown-v3", "press the button down from above", "button", [
        ("reach the button", _turned(0.003)),
        ("push the button halfway down", _turned(0.035)),
        ("press the button all the way down", SUCCESS),
    ], geoms=("btnGeom",), bodies=("button",), joint="btnbox_joint"),
    _task("button-press-topdown-wall-v3", "press the button behind the wall down from above", "button", [
        ("reach the button", _turned(0.003)),
        ("push the button halfway down", _turned(0.035)),
        ("press the button all the way down", SUCCESS),
    ], geoms=("btnGeom",), bodies=("button",), joint="btnbox_joint"),
]  # fmt: skip

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


UnknownTaskError = family.UnknownTaskError  # one class for every family's unknown task


def list_tasks() -> list[str]:
    """Names of the registered tasks, in registry order (grouped by kind of manipulation)."""
    return list(TASKS)


def get_task(name: str) -> TaskSpec:
    """The registered task `name`; an unknown name lists the valid ones.

    >>> get_task("push-v3").object_name
    'puck'
    """
    if name not in TASKS:
        raise UnknownTaskError(f"unknown sim task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]

