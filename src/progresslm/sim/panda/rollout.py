"""Panda rollouts: scripted Cartesian experts on panda-gym's scenes (PyBullet), the pose of every body kept for every
frame (so any frame re-renders from any camera in another client: `PandaState`), key steps detected on the recorded
state.

panda-gym's action is an end-effector displacement (an action of 1 moves the IK target 5 cm) and a change of the
finger opening; the experts steer it with a proportional law through the phases of their task. The phases are the
experts' own business: key steps are found afterwards by the task's detectors (`panda.tasks`) on what the simulator
recorded. Besides the expert, `rollout` runs two kinds of failure: `failure` (the expert's motions aimed at a phantom
object 16 cm beside the real one, so the object is never grasped or moved) and `random` (uniform random actions),
and a stalled expert (`stall_step=k`: stops when key step k has ended and holds still).

Every rollout runs in a fresh PyBullet client (~80 ms to build): a client reused across episodes, even restored with
`restoreState`, carries solver state from one episode into the next, so a seed would not give the same episode in
every worker. Frame t is the state after t env steps (frame 0 = after reset); an expert episode stops at the first
frame where the task's last key step is detected (its success).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from progresslm.sim.panda.tasks import CUBE_HALF, TABLE_TOP, PandaTask, PandaTrace, get_panda_task

MIN_STEP_FRAMES = 2
GAIN = 10.0  # action per metre of error (an action of 1 moves the IK target 5 cm)
PHANTOM_OFFSET = 0.16  # metres between the real object and the one a `failure` rollout aims at
STALL_HOLD = 25  # frames a stalled expert holds still
ROBOT_BASE = (-0.6, 0.0, 0.0)  # panda-gym's base position for the Panda
MOVING_JOINTS = (0, 1, 2, 3, 4, 5, 6, 9, 10)  # the arm's seven joints and the two fingers
BURIED = (0.0, 0.0, -5.0)  # where the goal ghosts are put: under the floor (z = -0.4), seen by no camera
# Bodies of each scene besides the robot: (movable objects, goal ghosts), as panda-gym names them.
SCENE_BODIES = {
    "reach": ((), ("target",)),
    "push": (("object",), ("target",)),
    "pick": (("object",), ("target",)),
    "stack": (("object1", "object2"), ("target1", "target2")),
}


@dataclass
class PandaEpisode:
    """One rollout of a Panda task. `states[i]` holds frame i's joint angles (`MOVING_JOINTS`) and each object's
    position and quaternion; `key_frames` holds frame 0 and the end frame of each key step found; `stall_frame` is where
    a stalled expert began holding (None otherwise); `kind` is expert, failure or random."""

    task: str
    seed: int
    states: np.ndarray
    actions: np.ndarray
    trace: PandaTrace
    key_frames: list[int]
    step_descriptions: tuple[str, ...]
    kind: str = "expert"
    success: bool = False
    failure: str | None = None
    stall_frame: int | None = None
    notes: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.states)

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    @property
    def ok(self) -> bool:
        return self.success and self.failure is None

    def region_points(self) -> np.ndarray:
        """World points the task happens at: the object's and fingertips' paths, the goal (and the other cube)."""
        points = [self.trace.tcp, self.trace.goal[:1]]
        if np.abs(self.trace.obj).sum() > 0:
            points.append(self.trace.obj)
        if np.abs(self.trace.other).sum() > 0:
            points.append(self.trace.other[:1])
        return np.concatenate(points)


# --------------------------------------------------------------------------- env


def egl_plugin_path() -> str | None:
    """The file of pybullet's `eglRenderer` plugin, or None when this pybullet has none."""
    spec = importlib.util.find_spec("eglRenderer")
    return spec.origin if spec is not None and spec.origin and os.path.exists(spec.origin) else None


@contextmanager
def native_stdout_quiet() -> Iterator[None]:
    """File descriptors 1 and 2 sent to /dev/null while the block runs: pybullet's C code prints its build time, its
    connect options, the EGL probe and "Destroy EGL OpenGL window" (about 20 lines per client, and a build makes a
    client per rollout and per scene) where Python's redirection cannot reach. Only pybullet's own calls run inside
    (an exception raised there is reported after the block, as usual); Python's streams are flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    try:
        with open(os.devnull, "wb") as null:
            for fd in (1, 2):
                os.dup2(null.fileno(), fd)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def new_env(scene: str, render: bool = False):
    """A panda-gym env of `scene` (PandaReach/Push/PickAndPlace/Stack with a 4-D action: the fingers move in every
    scene) in a new PyBullet client, no time limit. `render`: pybullet's EGL renderer plugin is loaded right after the
    client is made and before any body (loaded later it renders blank frames); `env.egl` says whether it loaded."""
    if scene not in SCENE_BODIES:
        raise ValueError(f"unknown Panda scene {scene!r}; valid scenes: {', '.join(SCENE_BODIES)}")
    with native_stdout_quiet():
        # lazy: pybullet and panda-gym are the panda extra's
        import pybullet
        from panda_gym.envs.core import RobotTaskEnv
        from panda_gym.envs.robots.panda import Panda
        from panda_gym.envs.tasks.pick_and_place import PickAndPlace
        from panda_gym.envs.tasks.push import Push
        from panda_gym.envs.tasks.reach import Reach
        from panda_gym.envs.tasks.stack import Stack
        from panda_gym.pybullet import PyBullet

        sim = PyBullet(render_mode="rgb_array", renderer="Tiny")  # DIRECT: no window
        egl = False
        if render:
            path = egl_plugin_path()
            if path is not None:
                egl = sim.physics_client.loadPlugin(path, "_eglRendererPlugin") >= 0
    robot = Panda(sim, block_gripper=False, base_position=np.array(ROBOT_BASE), control_type="ee")
    task = {"reach": lambda: Reach(sim, get_ee_position=robot.get_ee_position), "push": lambda: Push(sim),
            "pick": lambda: PickAndPlace(sim), "stack": lambda: Stack(sim)}[scene]()
    env = RobotTaskEnv(robot, task)
    env.egl, env.scene_name, env.bullet = egl, scene, pybullet
    return env


def _body(env, name: str) -> int:
    return env.sim._bodies_idx[name]


def _sample_goal(task: PandaTask, rng: np.random.Generator, obj: np.ndarray | None, other: np.ndarray | None,
                 grip0: np.ndarray) -> np.ndarray:
    kind = task.goal_kind
    if kind == "env" and not task.has_object:  # reach: a point in the air (panda-gym's may lie on the table)
        return np.array([*rng.uniform(-0.15, 0.15, size=2), rng.uniform(0.05, 0.25)])
    if kind == "env":  # push: panda-gym's box of goals, redrawn until 10 cm or more from the cube
        while True:
            xy = rng.uniform(-0.15, 0.15, size=2)
            if np.linalg.norm(xy - obj[:2]) >= 0.1:
                return np.array([xy[0], xy[1], TABLE_TOP + CUBE_HALF])
    if kind == "back":
        xy = obj[:2] + np.array([-rng.uniform(0.12, 0.18), rng.uniform(-0.04, 0.04)])
        return np.array([xy[0], xy[1], TABLE_TOP + CUBE_HALF])
    if kind == "hold":
        return obj + np.array([0.0, 0.0, 0.15])
    if kind == "high":
        xy = grip0[:2] + rng.uniform(-0.1, 0.1, size=2)
        return np.array([xy[0], xy[1], TABLE_TOP + CUBE_HALF + rng.uniform(0.12, 0.2)])
    if kind == "air":
        while True:
            xy = rng.uniform(-0.15, 0.15, size=2)
            if np.linalg.norm(xy - obj[:2]) >= 0.1:
                height = 0.0 if rng.random() < 0.3 else rng.uniform(0.03, 0.15)
                return np.array([xy[0], xy[1], TABLE_TOP + CUBE_HALF + height])
    if kind == "stack":
        return other + np.array([0.0, 0.0, 2 * CUBE_HALF])
    raise ValueError(f"unknown goal kind {kind!r}")


def reset(env, task: PandaTask, seed: int) -> np.ndarray:
    """Put `env` on the variant of `seed` and return the goal: the robot at panda-gym's neutral pose, the cube where
    panda-gym's sampling puts it (the stack scene's two cubes drawn here, 12 cm or more apart, both on the table), the
    goal from the task's rule; the goal ghosts buried under the floor."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    env.reset(seed=int(seed))
    rng = np.random.default_rng([int(seed), 17])
    sim = env.sim
    objects, ghosts = SCENE_BODIES[env.scene_name]
    upright = np.array([0.0, 0.0, 0.0, 1.0])
    other = None
    if env.scene_name == "stack":
        while True:
            a, b = rng.uniform(-0.15, 0.15, size=2), rng.uniform(-0.15, 0.15, size=2)
            if np.linalg.norm(a - b) >= 0.12:
                break
        sim.set_base_pose("object1", np.array([a[0], a[1], CUBE_HALF]), upright)
        sim.set_base_pose("object2", np.array([b[0], b[1], CUBE_HALF]), upright)
        other = np.array([b[0], b[1], CUBE_HALF])
    obj = sim.get_base_position(objects[0]) if objects else None
    goal = _sample_goal(task, rng, obj, other, env.robot.get_ee_position())
    for ghost in ghosts:
        sim.set_base_pose(ghost, np.array(BURIED), upright)
    env.task.goal = np.concatenate([goal] * len(ghosts)) if ghosts else goal
    return goal


def get_state(env) -> np.ndarray:
    """Frame state: the moving joints' angles, then each object's position and quaternion."""
    client, robot = env.sim.physics_client, _body(env, "panda")
    parts = [[s[0] for s in client.getJointStates(robot, list(MOVING_JOINTS))]]
    for name in SCENE_BODIES[env.scene_name][0]:
        position, orientation = client.getBasePositionAndOrientation(_body(env, name))
        parts += [position, orientation]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def set_state(env, state: np.ndarray) -> None:
    """Pose every body of `env` (made for the same scene) as in a stored frame state (no physics step)."""
    objects = SCENE_BODIES[env.scene_name][0]
    expected = len(MOVING_JOINTS) + 7 * len(objects)
    if state.shape != (expected,):
        raise ValueError(f"state has shape {state.shape}, but the {env.scene_name} scene needs ({expected},): "
                         "was the env made for the episode's task?")
    client, robot = env.sim.physics_client, _body(env, "panda")
    for joint, angle in zip(MOVING_JOINTS, state):
        client.resetJointState(robot, joint, float(angle))
    at = len(MOVING_JOINTS)
    for name in objects:
        client.resetBasePositionAndOrientation(_body(env, name), state[at : at + 3].tolist(), state[at + 3 : at + 7].tolist())
        at += 7


def _read(env, task: PandaTask) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    tcp = np.asarray(env.robot.get_ee_position(), dtype=float)
    fingers = float(env.robot.get_fingers_width())
    objects = SCENE_BODIES[env.scene_name][0]
    obj = np.asarray(env.sim.get_base_position(objects[0]), dtype=float) if objects else np.zeros(3)
    other = np.asarray(env.sim.get_base_position(objects[1]), dtype=float) if len(objects) > 1 else np.zeros(3)
    return tcp, fingers, obj, other


# --------------------------------------------------------------------------- experts


class Expert:
    """A scripted Cartesian policy: `act(tcp, fingers, obj, goal)` -> a 4-D action. `phantom` shifts where it believes
    the object is (a `failure` rollout)."""

    def __init__(self, task: PandaTask, phantom: np.ndarray | None = None):
        self.kind = task.expert
        self.high = task.goal_kind in ("high", "hold")
        self.phantom = np.zeros(3) if phantom is None else phantom
        self.phase = 0
        self.count = 0
        self.grasp_point: np.ndarray | None = None
        self.grip = 1.0

    @staticmethod
    def _toward(tcp, target, limit: float = 1.0) -> np.ndarray:
        return np.clip(GAIN * (np.asarray(target) - tcp), -limit, limit)

    def act(self, tcp, fingers, obj, goal) -> np.ndarray:
        obj = obj + self.phantom
        move = getattr(self, "_" + self.kind)(tcp, obj, np.asarray(goal))
        return np.concatenate([move, [self.grip]]).astype(np.float32)

    def _reach(self, tcp, obj, goal):
        self.grip = -1.0
        if self.phase == 0:
            if self.count == 0:
                self.count, self.height = 1, max(tcp[2], goal[2]) + 0.06
            target = np.array([goal[0], goal[1], self.height])
            if np.linalg.norm(target - tcp) < 0.008:
                self.phase = 1
            return self._toward(tcp, target, 0.6)
        return self._toward(tcp, goal, 0.5)

    def _grasp(self, tcp, obj) -> np.ndarray | None:
        """Phases 0-2 of every pick: over the object, down to it, close. None once closed."""
        if self.phase == 0:
            self.grip = 1.0
            target = obj + np.array([0.0, 0.0, 0.06])
            if np.linalg.norm(target - tcp) < 0.01:
                self.phase = 1
            return self._toward(tcp, target)
        if self.phase == 1:
            if np.linalg.norm(obj - tcp) < 0.006:
                self.phase, self.count = 2, 0
            return self._toward(tcp, obj, 0.4)
        if self.phase == 2:
            self.grip = -1.0
            self.count += 1
            if self.count >= 6:
                self.phase, self.grasp_point = 3, tcp.copy()
            return self._toward(tcp, obj, 0.2)
        return None

    def _pick(self, tcp, obj, goal):
        move = self._grasp(tcp, obj)
        if move is not None:
            return move
        if self.phase == 3:  # lift straight up, to the goal's height when placing high
            lift = goal[2] - self.grasp_point[2] if self.high else 0.06
            target = self.grasp_point + np.array([0.0, 0.0, max(lift, 0.06)])
            if abs(target[2] - tcp[2]) < 0.01:
                self.phase = 4
            return self._toward(tcp, target)
        return self._toward(tcp, goal, 0.6)

    def _place(self, tcp, obj, goal):
        move = self._grasp(tcp, obj)
        if move is not None:
            return move
        carry = max(goal[2], TABLE_TOP + CUBE_HALF) + 0.08
        held = tcp - obj  # the cube slips in the fingers: steer the cube, not the fingertips, over the goal
        if self.phase == 3:
            target = np.array([self.grasp_point[0], self.grasp_point[1], carry])
            if abs(target[2] - tcp[2]) < 0.01:
                self.phase, self.count = 4, 0
            return self._toward(tcp, target)
        if self.phase == 4:
            target = np.array([goal[0], goal[1], carry])
            if np.linalg.norm(target - obj) < 0.006:
                self.phase = 5
            return self._toward(tcp, target + held, 0.6)
        if self.phase == 5:  # down until the cube is at the goal or rests on what is under it
            self.count += 1
            if np.linalg.norm(goal - obj) < 0.006 or (self.count > 30 and abs(obj[2] - goal[2]) < 0.005):
                self.phase, self.count = 6, 0
            return self._toward(tcp, goal + held, 0.3)
        if self.phase == 6:
            self.grip = 1.0
            self.count += 1
            if self.count >= 5:
                self.phase = 7
            return np.zeros(3)
        return self._toward(tcp, goal + np.array([0.0, 0.0, 0.12]), 0.5)

    def _push(self, tcp, obj, goal, back: float = 0.05):
        self.grip = -1.0  # closed fingers: one narrow pusher
        direction = goal[:2] - obj[:2]
        remaining = np.linalg.norm(direction)
        direction = direction / max(remaining, 1e-6)
        behind = obj[:2] - back * direction
        hover = TABLE_TOP + 2 * CUBE_HALF + 0.06
        height = TABLE_TOP + 0.015
        if self.phase == 0:
            if tcp[2] < hover - 0.015 and np.linalg.norm(behind - tcp[:2]) > 0.015:  # up first, clear of the object
                return self._toward(tcp, np.array([tcp[0], tcp[1], hover]))
            target = np.array([behind[0], behind[1], hover])
            if np.linalg.norm(behind - tcp[:2]) < 0.01:
                self.phase = 1
            return self._toward(tcp, target)
        if self.phase == 1:
            target = np.array([behind[0], behind[1], height])
            if abs(height - tcp[2]) < 0.008:
                self.phase = 2
            return self._toward(tcp, target, 0.5)
        # push: the fingertips on the line from the object to the goal, moving along it
        lateral = tcp[:2] - behind
        off_line = abs(lateral[0] * direction[1] - lateral[1] * direction[0])
        if off_line > 0.025:  # the cube turned away: go round behind it again
            self.phase = 0
            return self._toward(tcp, np.array([tcp[0], tcp[1], hover]))
        target_xy = behind + direction * min(0.03, remaining)
        return self._toward(tcp, np.array([target_xy[0], target_xy[1], height]), 0.5)


# --------------------------------------------------------------------------- rollouts


def detect_key_frames(task: PandaTask, trace: PandaTrace, last: int | None = None) -> list[int]:
    """Frame 0 and the end of each key step found in order (stops at the first step not found by `last`)."""
    last = len(trace) - 1 if last is None else last
    key_frames = [0]
    for step in task.steps:
        start = key_frames[-1] + 1
        end = next((t for t in range(start, last + 1) if step.detector(trace, t)), None)
        if end is None:
            break
        key_frames.append(end)
    return key_frames


def _trace(tcps, fingers, objs, others, goal) -> PandaTrace:
    return PandaTrace(np.asarray(tcps), np.asarray(fingers), np.asarray(objs), np.repeat(goal[None], len(tcps), 0),
                      np.asarray(others))


def rollout(task: PandaTask | str, seed: int, kind: str = "expert", stall_step: int | None = None) -> PandaEpisode:
    """Run `task` on the variant of `seed` in a fresh client: the expert (`failure` set unless it succeeds with every
    key step, each at least `MIN_STEP_FRAMES` long), a `failure` (phantom-object expert) or a `random` policy;
    `stall_step` k stops the expert when key step k has ended and holds still for `STALL_HOLD` frames."""
    spec = get_panda_task(task) if isinstance(task, str) else task
    if kind not in ("expert", "failure", "random"):
        raise ValueError(f"unknown rollout kind {kind!r}; valid kinds: expert, failure, random")
    if stall_step is not None and (kind != "expert" or not 1 <= stall_step < len(spec.steps)):
        raise ValueError(f"stall_step must be in 1..{len(spec.steps) - 1} with the expert, got {stall_step} ({kind})")
    env = new_env(spec.scene)
    try:
        return _run(env, spec, seed, kind, stall_step)
    finally:
        with native_stdout_quiet():
            env.close()


def _run(env, spec: PandaTask, seed: int, kind: str, stall_step: int | None) -> PandaEpisode:
    goal = reset(env, spec, seed)
    rng = np.random.default_rng([int(seed), 29])
    phantom = None
    if kind == "failure":
        _, _, obj0, _ = _read(env, spec)
        anchor = obj0 if spec.has_object else goal
        toward_centre = np.zeros(2) - anchor[:2]
        if np.linalg.norm(toward_centre) < 1e-3:
            toward_centre = np.array([1.0, 0.0])
        side = np.array([-toward_centre[1], toward_centre[0]])
        side = side / max(np.linalg.norm(side), 1e-6)
        phantom = np.array([*(PHANTOM_OFFSET * side), 0.0])
    expert = Expert(spec, phantom)
    if kind == "failure" and not spec.has_object:
        goal_aim = goal + phantom
    else:
        goal_aim = goal + (phantom if phantom is not None and spec.expert == "push" else 0.0)
    states, tcps, fingers_, objs, others, actions = [], [], [], [], [], []

    def record():
        tcp, fingers, obj, other = _read(env, spec)
        states.append(get_state(env))
        tcps.append(tcp), fingers_.append(fingers), objs.append(obj), others.append(other)
        return tcp, fingers, obj

    tcp, fingers, obj = record()
    steps = spec.max_steps if kind != "random" else spec.max_steps // 2
    found, stall_frame, success = [0], None, False
    hold_action, steps_left = None, 0
    for _ in range(steps):
        if kind == "random":
            action = rng.uniform(-1.0, 1.0, size=4).astype(np.float32)
        elif hold_action is not None:
            action = hold_action
        else:
            action = expert.act(tcp, fingers, obj, goal_aim)
        env.step(action)
        actions.append(action)
        tcp, fingers, obj = record()
        if kind != "expert":
            continue
        trace = _trace(tcps, fingers_, objs, others, goal)
        t = len(tcps) - 1
        k = len(found) - 1  # steps found so far
        if k < len(spec.steps) and spec.steps[k].detector(trace, t):
            found.append(t)
            if stall_step is not None and len(found) - 1 == stall_step:
                stall_frame = t
                hold_action = np.array([0.0, 0.0, 0.0, expert.grip], dtype=np.float32)
                steps_left = STALL_HOLD
            if len(found) - 1 == len(spec.steps):
                success = True
                break
        if stall_frame is not None:
            steps_left -= 1
            if steps_left < 0:
                break
    trace = _trace(tcps, fingers_, objs, others, goal)
    failure = None
    if kind == "expert" and stall_step is None:
        if not success:
            failure = f"expert did not finish step {len(found)} '{spec.steps[len(found) - 1].description}' in {steps} steps"
        else:
            short = [k for k in range(1, len(found)) if found[k] - found[k - 1] < MIN_STEP_FRAMES]
            if short:
                failure = f"step {short[0]} lasts fewer than {MIN_STEP_FRAMES} frames"
    elif stall_step is not None:
        failure = f"stalled after step {stall_step}" if stall_frame is not None else (
            f"expert did not finish step {len(found)} before the stall")
    elif kind == "failure":
        moved = float(np.linalg.norm(trace.obj[-1] - trace.obj[0])) if spec.has_object else 0.0
        failure = f"expert motions beside the {spec.object_name} (it moved {moved:.3f} m)"
        found = detect_key_frames(spec, trace)
    else:
        failure = "random policy"
        found = detect_key_frames(spec, trace)
    return PandaEpisode(
        task=spec.name, seed=int(seed), states=np.stack(states), actions=np.stack(actions), trace=trace,
        key_frames=found, step_descriptions=spec.step_descriptions, kind=kind, success=success, failure=failure,
        stall_frame=stall_frame,
    )
