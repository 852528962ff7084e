"""Fetch rollouts: scripted Cartesian experts on gymnasium-robotics' `-v4` Fetch envs, the MuJoCo state of every frame
kept (so any frame re-renders from any camera: `restore`), key steps detected on the recorded state.

The experts steer the gripper's mocap target with a proportional law (an action of 1 moves it 5 cm) through the
phases of their task; the phases are the experts' own business: key steps are found afterwards by the task's
detectors (`fetch.tasks`) on what the simulator recorded. Besides the expert, `rollout` runs two kinds of failure:
`failure` (the expert's motions aimed at a phantom object 16 cm beside the real one, so the object is never grasped or
moved) and `random` (uniform random actions), and a stalled expert (`stall_step=k`: stops when key step k has ended and
holds still).

Frame t is the state after t env steps (frame 0 = after reset); an expert episode stops at the first frame where the
task's last key step is detected (its success).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from progresslm.sim.fetch.tasks import BLOCK_HALF, TABLE_TOP, FetchTask, FetchTrace, get_fetch_task

STATE_PARTS = ("mjSTATE_FULLPHYSICS", "mjSTATE_CTRL", "mjSTATE_MOCAP_POS", "mjSTATE_MOCAP_QUAT", "mjSTATE_EQ_ACTIVE")
MIN_STEP_FRAMES = 2
GAIN = 12.0  # action per metre of error (an action of 1 moves the mocap 5 cm)
PHANTOM_OFFSET = 0.16  # metres between the real object and the one a `failure` rollout aims at
STALL_HOLD = 25  # frames a stalled expert holds still
CORNER = np.array([1.3 + 0.25 - 0.07, 0.75 + 0.35 - 0.07])  # FetchPush's table: far (+x) left (+y) corner, 7 cm in


@dataclass
class FetchEpisode:
    """One rollout of a Fetch task. `states[i]` is the MuJoCo state of frame i (`mj_getState`, `STATE_PARTS`);
    `key_frames` holds frame 0 and the end frame of each key step found; `stall_frame` is where a stalled expert
    began holding (None otherwise); `kind` is expert, failure or random."""

    task: str
    seed: int
    states: np.ndarray
    actions: np.ndarray
    trace: FetchTrace
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
        """World points the task happens at: the object's and fingertips' paths and the goal."""
        points = [self.trace.tcp, self.trace.goal[:1]]
        if np.abs(self.trace.obj).sum() > 0:
            points.append(self.trace.obj)
        return np.concatenate(points)


# --------------------------------------------------------------------------- env


def state_spec() -> int:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    spec = 0
    for part in STATE_PARTS:
        spec |= int(getattr(mujoco.mjtState, part))
    return spec


# Free cameras added to every Fetch scene (world frame): position, the point looked at, vertical field of view.
# `fetch_wide` shows robot, table and floor from the far end of the table; `fetch_close` looks at the table top from
# low on the robot's right, 0.6 m away: the two differ a lot in scale and angle (the shipped head and gripper cameras
# look at the robot's own body or the sky).
EXTRA_CAMERAS = {
    "fetch_wide": ((2.25, 1.6, 1.35), (1.1, 0.75, 0.45), 45.0),
    "fetch_close": ((1.12, 0.2, 0.72), (1.33, 0.78, 0.42), 50.0),
}


def _with_cameras(env_class):
    """`env_class` whose model gains `EXTRA_CAMERAS` (compiled from its XML with MjSpec; physics unchanged)."""

    def _initialize_simulation(self):
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        setup = dict(self.initial_qpos)  # the joint values _env_setup applies (it replaces the attribute)

        def build(spec):
            self.model = spec.compile()
            mocap = self.model.body("robot0:mocap").id
            self.model.geom_group[self.model.geom_bodyid == mocap] = 5  # the mocap's faint green boxes: never drawn
            self.data = mujoco.MjData(self.model)
            self._model_names = self._utils.MujocoModelNames(self.model)
            self.model.vis.global_.offwidth = self.width
            self.model.vis.global_.offheight = self.height
            self._env_setup(initial_qpos=setup)

        spec = mujoco.MjSpec.from_file(self.fullpath)
        for name, (pos, target, fovy) in EXTRA_CAMERAS.items():
            forward = np.subtract(target, pos) / np.linalg.norm(np.subtract(target, pos))
            right = np.cross(forward, (0.0, 0.0, 1.0))
            right /= np.linalg.norm(right)
            up = np.cross(right, forward)
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, np.column_stack([right, up, -forward]).reshape(-1))
            spec.worldbody.add_camera(name=name, pos=pos, quat=quat, fovy=fovy)
        # external_camera_0 rides on the robot's base, which the setup slides into place and which then never moves:
        # re-made in the world frame at its set-up pose, so that framing (which reads `cam_pos`/`cam_quat` as world
        # poses) can aim it. Physics is unchanged.
        build(spec)
        shipped = self.model.camera("external_camera_0").id
        pose = self.data.cam_xpos[shipped].copy(), self.data.cam_xmat[shipped].copy(), float(self.model.cam_fovy[shipped])
        spec.camera("external_camera_0").delete()
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, pose[1])
        spec.worldbody.add_camera(name="external_camera_0", pos=pose[0], quat=quat, fovy=pose[2])
        build(spec)
        self.initial_time = self.data.time
        self.initial_qpos = np.copy(self.data.qpos)
        self.initial_qvel = np.copy(self.data.qvel)

    return type(env_class.__name__, (env_class,), {"_initialize_simulation": _initialize_simulation})


def new_env(task: FetchTask):
    """A gymnasium-robotics Fetch env of the task's scene with `EXTRA_CAMERAS`; no time limit, no render mode (no
    GL)."""
    from gymnasium_robotics.envs.fetch.pick_and_place import (
        MujocoFetchPickAndPlaceEnv,  # lazy: the fetch extra; imports mujoco, so only after check_gl
    )
    from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv
    from gymnasium_robotics.envs.fetch.reach import (
        MujocoFetchReachEnv,  # lazy: the fetch extra; imports mujoco, so only after check_gl
    )
    from gymnasium_robotics.envs.fetch.slide import MujocoFetchSlideEnv

    classes = {"reach": MujocoFetchReachEnv, "push": MujocoFetchPushEnv, "slide": MujocoFetchSlideEnv,
               "pick": MujocoFetchPickAndPlaceEnv}
    return _with_cameras(classes[task.scene])()


def reset(env, task: FetchTask, seed: int) -> None:
    """Put `env` on the variant of `seed`: the object's start from gymnasium-robotics' own sampling, the goal from its
    sampling (`goal_kind` env) or drawn by the task's own rule."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    env.reset(seed=int(seed))
    rng = np.random.default_rng([int(seed), 17])
    obj = env.data.site("object0").xpos.copy() if task.has_object else None
    grip0 = np.asarray(env.initial_gripper_xpos[:3], dtype=float)
    kind = task.goal_kind
    if kind == "hold":
        env.goal = obj + np.array([0.0, 0.0, 0.22])
    elif kind == "high":
        xy = grip0[:2] + rng.uniform(-0.12, 0.12, size=2)
        env.goal = np.array([xy[0], xy[1], TABLE_TOP + BLOCK_HALF + rng.uniform(0.2, 0.32)])
    elif kind == "table":
        while True:
            xy = grip0[:2] + rng.uniform(-0.15, 0.15, size=2)
            if np.linalg.norm(xy - obj[:2]) >= 0.12:
                break
        env.goal = np.array([xy[0], xy[1], TABLE_TOP + BLOCK_HALF])
    elif kind == "corner":
        xy = CORNER + rng.uniform(-0.02, 0.02, size=2)
        env.goal = np.array([xy[0], xy[1], TABLE_TOP + BLOCK_HALF])
    elif kind == "ahead":
        env.goal = obj + np.array([rng.uniform(0.15, 0.25), rng.uniform(-0.1, 0.1), 0.0])
    elif kind != "env":
        raise ValueError(f"unknown goal kind {kind!r}")
    env.goal = np.asarray(env.goal, dtype=float).copy()
    mujoco.mj_forward(env.model, env.data)


def restore(env, state: np.ndarray) -> None:
    """Put a stored frame state into `env` (made for the same task's scene) and recompute positions."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    spec = state_spec()
    expected = mujoco.mj_stateSize(env.model, spec)
    if state.shape != (expected,):
        raise ValueError(f"state has shape {state.shape}, but this env's model needs ({expected},): "
                         "was the env made for the episode's task?")
    mujoco.mj_setState(env.model, env.data, np.array(state, dtype=np.float64), spec)
    mujoco.mj_forward(env.model, env.data)


def _get_state(env, spec: int, size: int) -> np.ndarray:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    out = np.empty(size, dtype=np.float64)
    mujoco.mj_getState(env.model, env.data, out, spec)
    return out


def _read(env, task: FetchTask) -> tuple[np.ndarray, float, np.ndarray]:
    data = env.data
    tcp = data.site("robot0:grip").xpos.copy()
    fingers = float(data.joint("robot0:l_gripper_finger_joint").qpos[0] + data.joint("robot0:r_gripper_finger_joint").qpos[0])
    obj = data.site("object0").xpos.copy() if task.has_object else np.zeros(3)
    return tcp, fingers, obj


# --------------------------------------------------------------------------- experts


class Expert:
    """A scripted Cartesian policy: `act(tcp, fingers, obj, goal)` -> a 4-D action. `phantom` shifts where it believes
    the object is (a `failure` rollout)."""

    def __init__(self, task: FetchTask, phantom: np.ndarray | None = None):
        self.kind = task.expert
        self.high = task.goal_kind == "high"
        self.slippery = task.scene == "slide"
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
        if self.phase == 0:
            if self.count == 0:
                self.count, self.height = 1, max(tcp[2], goal[2]) + 0.06
            target = np.array([goal[0], goal[1], self.height])
            if np.linalg.norm(target - tcp) < 0.008:
                self.phase = 1
            return self._toward(tcp, target, 0.6)
        return self._toward(tcp, goal, 0.6)

    def _grasp(self, tcp, obj) -> np.ndarray | None:
        """Phases 0-2 of every pick: over the object, down to it, close. None once closed."""
        if self.phase == 0:
            self.grip = 1.0
            target = obj + np.array([0.0, 0.0, 0.06])
            if np.linalg.norm(target - tcp) < 0.012:
                self.phase = 1
            return self._toward(tcp, target)
        if self.phase == 1:
            if np.linalg.norm(obj - tcp) < 0.007:
                self.phase, self.count = 2, 0
            return self._toward(tcp, obj, 0.5)
        if self.phase == 2:
            self.grip = -1.0
            self.count += 1
            if self.count >= 4:
                self.phase, self.grasp_point = 3, tcp.copy()
            return np.zeros(3)
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
        return self._toward(tcp, goal)

    def _place(self, tcp, obj, goal):
        move = self._grasp(tcp, obj)
        if move is not None:
            return move
        carry = TABLE_TOP + 0.1
        if self.phase == 3:
            target = np.array([self.grasp_point[0], self.grasp_point[1], carry])
            if abs(target[2] - tcp[2]) < 0.01:
                self.phase = 4
            return self._toward(tcp, target)
        if self.phase == 4:
            target = np.array([goal[0], goal[1], carry])
            if np.linalg.norm(target - tcp) < 0.008:
                self.phase = 5
            return self._toward(tcp, target)
        if self.phase == 5:
            if np.linalg.norm(goal - tcp) < 0.006:
                self.phase, self.count = 6, 0
            return self._toward(tcp, goal, 0.4)
        if self.phase == 6:
            self.grip = 1.0
            self.count += 1
            if self.count >= 4:
                self.phase = 7
            return np.zeros(3)
        return self._toward(tcp, goal + np.array([0.0, 0.0, 0.12]))

    def _push(self, tcp, obj, goal, back: float = 0.05):
        direction = goal[:2] - obj[:2]
        remaining = np.linalg.norm(direction)
        direction = direction / max(remaining, 1e-6)
        behind = obj[:2] - back * direction
        hover = TABLE_TOP + BLOCK_HALF + 0.07
        height = obj[2]
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
        if off_line > 0.025:  # the block turned away: go round behind it again
            self.phase = 0
            return self._toward(tcp, np.array([tcp[0], tcp[1], hover]))
        lead, limit = 0.03, 0.6
        if self.slippery:  # a puck on the slippery table glides on: slow down near the goal
            lead, limit = 0.02, max(0.04, 0.3 * min(1.0, remaining / 0.1))
        target_xy = behind + direction * min(lead, remaining)
        return self._toward(tcp, np.array([target_xy[0], target_xy[1], height]), limit)

    def _slide(self, tcp, obj, goal):
        if self.phase < 2:
            return self._push(tcp, obj, goal, back=0.06)
        # in contact, speed up along the line to the goal until the puck moves as fast as a glide of the
        # remaining distance needs (measured, not assumed), then stop the gripper: the puck slides on alone
        direction = goal[:2] - obj[:2]
        remaining = np.linalg.norm(direction)
        direction = direction / max(remaining, 1e-6)
        if self.phase == 2:
            self.phase, self.speed, self.last_obj = 3, 0.0, obj.copy()
        if self.phase == 3:
            puck_speed = float(np.linalg.norm(obj[:2] - self.last_obj[:2]))
            self.last_obj = obj.copy()
            if puck_speed >= SLIDE_COEF * np.sqrt(remaining):
                self.phase = 4
                return np.zeros(3)
            self.speed = min(1.0, self.speed + 0.08)
            behind = obj[:2] - 0.06 * direction
            lateral = behind - tcp[:2]
            correction = np.clip(GAIN * lateral, -0.3, 0.3)
            move = direction * self.speed + correction - direction * np.dot(correction, direction)
            return np.array([move[0], move[1], GAIN * (obj[2] - tcp[2])])
        return np.zeros(3)


SLIDE_COEF = 0.056  # release speed (m/step) per sqrt(metre) left: dt * sqrt(2 mu g), mu = 0.1; tuned on seeds 1000-1011


# --------------------------------------------------------------------------- rollouts


def detect_key_frames(task: FetchTask, trace: FetchTrace, last: int | None = None) -> list[int]:
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


class FetchEnvs:
    """Envs kept per scene within one process (building one parses its XML); `get` resets one to a task and seed."""

    def __init__(self):
        self._envs: dict[str, object] = {}

    def get(self, task: FetchTask, seed: int):
        env = self._envs.get(task.scene)
        if env is None:
            env = self._envs[task.scene] = new_env(task)
        reset(env, task, seed)
        return env

    def close(self) -> None:
        for env in self._envs.values():
            for renderer in env.__dict__.pop("_progresslm_renderers", {}).values():
                renderer.close()
            env.close()
        self._envs.clear()


def rollout(task: FetchTask | str, seed: int, kind: str = "expert", stall_step: int | None = None,
            envs: FetchEnvs | None = None) -> FetchEpisode:
    """Run `task` on the variant of `seed`: the expert (`failure` set unless it succeeds with every key step, each at
    least `MIN_STEP_FRAMES` long), a `failure` (phantom-object expert) or a `random` policy; `stall_step` k stops the
    expert when key step k has ended and holds still for `STALL_HOLD` frames."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    spec = get_fetch_task(task) if isinstance(task, str) else task
    if kind not in ("expert", "failure", "random"):
        raise ValueError(f"unknown rollout kind {kind!r}; valid kinds: expert, failure, random")
    if stall_step is not None and (kind != "expert" or not 1 <= stall_step < len(spec.steps)):
        raise ValueError(f"stall_step must be in 1..{len(spec.steps) - 1} with the expert, got {stall_step} ({kind})")
    own = envs is None
    envs = envs or FetchEnvs()
    env = envs.get(spec, seed)
    bits = state_spec()
    size = mujoco.mj_stateSize(env.model, bits)
    goal = np.asarray(env.goal, dtype=float).copy()
    rng = np.random.default_rng([int(seed), 29])
    phantom = None
    if kind == "failure":
        tcp0, _, obj0 = _read(env, spec)
        anchor = obj0 if spec.has_object else goal
        toward_centre = np.array([1.3, 0.75]) - anchor[:2]
        side = np.array([-toward_centre[1], toward_centre[0]])
        side = side / max(np.linalg.norm(side), 1e-6)
        if np.dot(side, toward_centre) < 0:
            side = -side
        phantom = np.array([*(PHANTOM_OFFSET * side), 0.0])
    expert = Expert(spec, phantom)
    if kind == "failure" and not spec.has_object:
        goal_aim = goal + phantom
    else:
        goal_aim = goal + (phantom if phantom is not None and spec.expert in ("push", "slide") else 0.0)
    states, tcps, fingers_, objs, actions = [], [], [], [], []

    def record():
        tcp, fingers, obj = _read(env, spec)
        states.append(_get_state(env, bits, size))
        tcps.append(tcp), fingers_.append(fingers), objs.append(obj)
        return tcp, fingers, obj

    tcp, fingers, obj = record()
    steps = spec.max_steps if kind != "random" else spec.max_steps // 2
    found, stall_frame, success = [0], None, False
    hold_action = None
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
        trace = FetchTrace(np.asarray(tcps), np.asarray(fingers_), np.asarray(objs), np.repeat(goal[None], len(tcps), 0))
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
    trace = FetchTrace(np.asarray(tcps), np.asarray(fingers_), np.asarray(objs), np.repeat(goal[None], len(tcps), 0))
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
    episode = FetchEpisode(
        task=spec.name, seed=int(seed), states=np.stack(states), actions=np.stack(actions), trace=trace,
        key_frames=found, step_descriptions=spec.step_descriptions, kind=kind, success=success, failure=failure,
        stall_frame=stall_frame,
    )
    if own:
        envs.close()
    return episode
