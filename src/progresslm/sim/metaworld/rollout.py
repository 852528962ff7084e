"""Scripted Meta-World rollouts that keep the simulator state of every frame, with key steps detected.

`rollout(task, seed)` runs the task's scripted expert on the object/goal variant chosen by `seed` and
returns an `Episode`: the MuJoCo state of every frame (enough to re-render any frame from any camera
without simulating again: `restore(make_env(task, seed), episode.states[i])`), the `SimState` trace
the key-step detectors read, and the keyframes (frame 0, then the frame where each key step ends;
the last at success). Episodes hold only numpy arrays and plain values, so a process pool can
return them. mujoco and metaworld are imported on first use; no rendering or GL is needed here.

Frame t is the state after t env steps (frame 0 = after reset); an episode of n steps has n+1 frames
and stops at the first frame where the env reports success.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from progresslm.sim.metaworld.tasks import SimState, TaskSpec, get_task
from progresslm.sim.mujoco_scene.render import FrameRenderer

# Meta-World's max_path_length: stepping an env further raises.
MAX_EPISODE_STEPS = 500
# A key step must last at least this many frames; shorter ones make keyframes that show the same
# moment twice, so such an episode is rejected rather than kept with a degenerate interval.
MIN_STEP_FRAMES = 2
# metaworld.MT1(name, seed=b) draws 50 object/goal variants; seed s uses variant s % 50 of block
# s // 50, so every non-negative seed has its own variant and one MT1 build serves 50 seeds.
VARIANTS_PER_BLOCK = 50
# What is stored per frame: time, qpos, qvel, act, controls, mocap pose, active equality
# constraints. This is everything that positions a body, so a restored frame renders identically.
# mjSTATE_INTEGRATION would add the solver warm start and applied forces (276 instead of ~42 numbers
# per frame for pick-place); they matter only for continuing the simulation bit-for-bit.
STATE_PARTS = ("mjSTATE_FULLPHYSICS", "mjSTATE_CTRL", "mjSTATE_MOCAP_POS", "mjSTATE_MOCAP_QUAT", "mjSTATE_EQ_ACTIVE")

_VECTORS = ("hand", "tcp", "obj", "obj2", "goal")
_SCALARS = ("gripper", "joint", "obj_to_target", "in_place_reward", "grasp_reward")
_FLAGS = ("success", "near_object", "grasp_success")


@dataclass
class SimTrace:
    """The `SimState` of every frame as arrays: (n_frames, 3) vectors and (n_frames,) scalars."""

    hand: np.ndarray
    tcp: np.ndarray
    obj: np.ndarray
    obj2: np.ndarray
    goal: np.ndarray
    gripper: np.ndarray
    joint: np.ndarray
    obj_to_target: np.ndarray
    in_place_reward: np.ndarray
    grasp_reward: np.ndarray
    success: np.ndarray
    near_object: np.ndarray
    grasp_success: np.ndarray

    def __len__(self) -> int:
        return len(self.hand)

    def at(self, frame: int) -> SimState:
        """The state detectors see at `frame`; `*_init` come from frame 0."""
        return SimState(
            hand=self.hand[frame],
            tcp=self.tcp[frame],
            gripper=float(self.gripper[frame]),
            obj=self.obj[frame],
            obj2=self.obj2[frame],
            goal=self.goal[frame],
            obj_init=self.obj[0],
            obj2_init=self.obj2[0],
            joint=float(self.joint[frame]),
            success=bool(self.success[frame]),
            near_object=bool(self.near_object[frame]),
            grasp_success=bool(self.grasp_success[frame]),
            obj_to_target=float(self.obj_to_target[frame]),
            in_place_reward=float(self.in_place_reward[frame]),
            grasp_reward=float(self.grasp_reward[frame]),
        )

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> SimTrace:
        columns: dict[str, np.ndarray] = {}
        for name in _VECTORS + _SCALARS:
            columns[name] = np.asarray([row[name] for row in rows], dtype=np.float32)
        for name in _FLAGS:
            columns[name] = np.asarray([row[name] for row in rows], dtype=bool)
        return cls(**columns)


@dataclass
class Episode:
    """One scripted execution of a task.

    `states[i]` is the MuJoCo state of frame i (`mj_getState` with `state_spec`, float64);
    `key_frames` holds T+1 frame indices: 0, then the end frame of each of the T key steps (empty
    or partial when `failure` says why the episode is unusable).
    """

    task: str
    seed: int
    success: bool
    n_steps: int
    states: np.ndarray
    actions: np.ndarray
    trace: SimTrace
    key_frames: list[int]
    step_descriptions: list[str]
    state_spec: int
    failure: str | None = None

    @property
    def n_frames(self) -> int:
        return self.n_steps + 1

    @property
    def ok(self) -> bool:
        """Expert succeeded and every key step was found."""
        return self.success and self.failure is None


class KeyStepNotFound(ValueError):
    """A key step's detector never fired in time; `found` holds the key frames found before it."""

    def __init__(self, message: str, found: list[int]):
        super().__init__(message)
        self.found = found


def detect_key_frames(task: TaskSpec, trace: SimTrace, min_gap: int = MIN_STEP_FRAMES) -> list[int]:
    """Frame 0 plus the end frame of each key step, found in order on the trace.

    Step k ends at the first frame after the end of step k-1 where its detector is true; the last
    step must end at the trace's last frame (the first success). Raises `KeyStepNotFound` when a
    step never ends before the last frame or lasts fewer than `min_gap` frames.
    """
    last = len(trace) - 1
    key_frames = [0]
    for k, step in enumerate(task.steps):
        final = k == len(task.steps) - 1
        start = key_frames[-1] + 1
        end = next((t for t in range(start, last + 1) if step.detector(trace.at(t))), None)
        if end is None or (not final and end == last) or (final and end != last):
            raise KeyStepNotFound(f"step {k + 1} '{step.description}' not detected ({step.detector})", key_frames)
        if end - key_frames[-1] < min_gap:
            raise KeyStepNotFound(
                f"step {k + 1} '{step.description}' lasts {end - key_frames[-1]} frame(s) (< {min_gap})", key_frames
            )
        key_frames.append(end)
    return key_frames


def progress_labels(episode: Episode) -> np.ndarray:
    """Progress in [0, 1] for every frame, linear in time between key-step ends (docs/protocol.md §1).

    Keyframe i gets exactly i/T; frames after the last keyframe (none in a rollout, which stops at
    success) get 1.
    """
    if not episode.ok:
        raise ValueError(f"episode {episode.task}/{episode.seed} has no complete key frames: {episode.failure}")
    key_frames = np.asarray(episode.key_frames, dtype=float)
    steps = len(key_frames) - 1
    return np.interp(np.arange(episode.n_frames), key_frames, np.arange(steps + 1) / steps)


# --------------------------------------------------------------------------- environment


def state_spec() -> int:
    """The `mjtState` bit mask of what `Episode.states` holds."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    spec = 0
    for part in STATE_PARTS:
        spec |= int(getattr(mujoco.mjtState, part))
    return spec


@functools.lru_cache(maxsize=128)  # a worker meets the same tasks again: MT1 builds 50 variants in ~0.4 s
def _variants(task_name: str, block: int) -> tuple[Any, ...]:
    import metaworld  # lazy: the sim extra; imports mujoco, so only after check_gl

    return tuple(metaworld.MT1(task_name, seed=block).train_tasks)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _new_env(task_name: str, seed: int) -> tuple[Any, np.ndarray]:
    get_task(task_name)  # fails with the list of valid names
    _check_seed(seed)
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task_name]()  # render_mode None: no GL needed
    env.set_task(_variants(task_name, seed // VARIANTS_PER_BLOCK)[seed % VARIANTS_PER_BLOCK])
    obs, _ = env.reset()
    # reset leaves derived quantities (body and site positions) stale in some tasks; recompute them
    # so frame 0's snapshot matches what a restored frame 0 renders. This changes no state.
    mujoco.mj_forward(env.model, env.data)
    return env, obs


def _reset_to(env: Any, task_name: str, seed: int) -> np.ndarray:
    """Put a (possibly used) env of `task_name` on the variant of `seed` and reset it, as `_new_env` leaves a new one."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    _check_seed(seed)
    env.set_task(_variants(task_name, seed // VARIANTS_PER_BLOCK)[seed % VARIANTS_PER_BLOCK])
    obs, _ = env.reset()
    mujoco.mj_forward(env.model, env.data)
    return obs


class EnvPool:
    """Envs (and their renderers) kept alive within one process and reset to each new variant: building an env
    parses its XML (~0.09 s) and a renderer makes a GL context (~0.2 s), while a reset takes ~3 ms. A build worker
    takes envs with `acquire` and gives them back with `release`; at most `keep` idle envs stay, least recently used
    first out. A reset env gives the same states and frames as a new one (tests/sim/test_env_pool.py)."""

    def __init__(self, keep: int = 12):
        self.keep = keep
        self._idle: list[tuple[str, Any]] = []  # (task, env), most recently released last
        self.made = 0  # envs constructed (a benchmark reads it)

    def acquire(self, task_name: str, seed: int) -> tuple[Any, np.ndarray]:
        for k in range(len(self._idle) - 1, -1, -1):
            if self._idle[k][0] == task_name:
                env = self._idle.pop(k)[1]
                return env, _reset_to(env, task_name, seed)
        self.made += 1
        return _new_env(task_name, seed)

    def release(self, task_name: str, env: Any) -> None:
        self._idle.append((task_name, env))
        while len(self._idle) > self.keep:
            self._close(self._idle.pop(0)[1])

    def renderer(self, env: Any, size: int):
        """The env's renderer of `size` pixels, made once and kept with the env; textures are re-checked against
        the model before its next frame (a previous user may have left edited textures on the GPU)."""

        renderers = env.__dict__.setdefault("_progresslm_renderers", {})
        renderer = renderers.get(size)
        if renderer is None:
            renderer = renderers[size] = FrameRenderer(env.model, size=size)
        else:
            renderer.resync()
        return renderer

    @staticmethod
    def _close(env: Any) -> None:
        for renderer in env.__dict__.pop("_progresslm_renderers", {}).values():
            renderer.close()
        env.close()

    def close(self) -> None:
        while self._idle:
            self._close(self._idle.pop()[1])


def make_env(task_name: str, seed: int) -> Any:
    """A reset Meta-World env of `task_name` with the object/goal variant of `seed`, no renderer.

    The reset also applies the variant's model edits (goal site, fixture positions), so states of an
    episode with the same task and seed can be restored into it.
    """
    return _new_env(task_name, seed)[0]


def restore(env: Any, state: np.ndarray) -> None:
    """Put a stored frame state (`Episode.states[i]`) into `env` and recompute positions.

    `env` must come from `make_env` with the episode's task and seed.
    """
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    spec = state_spec()
    expected = mujoco.mj_stateSize(env.model, spec)
    if state.shape != (expected,):
        raise ValueError(
            f"state has shape {state.shape}, but this env's model needs ({expected},): "
            "was the env made with the episode's task?"
        )
    mujoco.mj_setState(env.model, env.data, np.array(state, dtype=np.float64), spec)  # copy: must be writeable
    mujoco.mj_forward(env.model, env.data)


def _get_state(env: Any, spec: int, size: int) -> np.ndarray:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    out = np.empty(size, dtype=np.float64)
    mujoco.mj_getState(env.model, env.data, out, spec)
    return out


def _snapshot(env: Any, joint_address: int | None, info: dict[str, Any] | None) -> dict[str, Any]:
    """Detector inputs read from the env's current (forwarded) data, plus the step's info."""
    current = env._get_curr_obs_combined_no_goal()  # hand (3), gripper (1), 2 x (pos 3, quat 4)
    info = info or {}
    return {
        "hand": current[0:3],
        "tcp": np.array(env.tcp_center),
        "gripper": current[3],
        "obj": current[4:7],
        "obj2": current[11:14],
        "goal": np.array(env._get_pos_goal()),
        "joint": float(env.data.qpos[joint_address]) if joint_address is not None else 0.0,
        "success": bool(info.get("success", False)),
        "near_object": bool(info.get("near_object", False)),
        "grasp_success": bool(info.get("grasp_success", False)),
        "obj_to_target": float(info.get("obj_to_target", 0.0)),
        "in_place_reward": float(info.get("in_place_reward", 0.0)),
        "grasp_reward": float(info.get("grasp_reward", 0.0)),
    }


def rollout(
    task: TaskSpec | str, seed: int, max_steps: int = MAX_EPISODE_STEPS, *, keep_failures: bool = False,
    pool: EnvPool | None = None,
) -> Episode | None:
    """Run the scripted expert of `task` on the variant of `seed` until success or `max_steps`.

    Returns None when the expert fails or a key step is not detected, unless `keep_failures`, which
    returns the episode with `failure` set (useful to debug detectors). With `pool`, the env comes from
    and goes back to it.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if not 1 <= max_steps <= MAX_EPISODE_STEPS:
        raise ValueError(f"max_steps must be in 1..{MAX_EPISODE_STEPS} (Meta-World's episode limit), got {max_steps}")
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import
    from metaworld.policies import ENV_POLICY_MAP

    env, obs = pool.acquire(spec.name, seed) if pool is not None else _new_env(spec.name, seed)
    policy = ENV_POLICY_MAP[spec.name]()
    joint_address = int(env.model.jnt_qposadr[env.model.joint(spec.joint).id]) if spec.joint else None
    state_bits = state_spec()
    size = mujoco.mj_stateSize(env.model, state_bits)

    states = [_get_state(env, state_bits, size)]
    rows = [_snapshot(env, joint_address, None)]
    actions = []
    success = False
    for _ in range(max_steps):
        with warnings.catch_warnings():
            # the experts' gains trip metaworld's own "may be too high" warning; actions are clipped
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            action = policy.get_action(obs)
        obs, _, _, truncated, info = env.step(action)
        actions.append(np.asarray(action, dtype=np.float32))
        states.append(_get_state(env, state_bits, size))
        rows.append(_snapshot(env, joint_address, info))
        if info["success"]:
            success = True
            break
        if truncated:
            break
    if pool is not None:
        pool.release(spec.name, env)
    else:
        env.close()

    trace = SimTrace.from_rows(rows)
    if joint_address is not None:
        trace.joint -= trace.joint[0]  # displacement since frame 0
    failure = None if success else f"expert did not succeed in {len(actions)} steps"
    key_frames: list[int] = []
    if success:
        try:
            key_frames = detect_key_frames(spec, trace)
        except KeyStepNotFound as error:
            failure, key_frames = str(error), error.found
    episode = Episode(
        task=spec.name,
        seed=int(seed),
        success=success,
        n_steps=len(actions),
        states=np.stack(states),
        actions=np.stack(actions) if actions else np.zeros((0, 4), dtype=np.float32),
        trace=trace,
        key_frames=key_frames,
        step_descriptions=spec.step_descriptions,
        state_spec=state_bits,
        failure=failure,
    )
    return episode if episode.ok or keep_failures else None


# --------------------------------------------------------------------------- failures and stalls (sim export-videos)

STALL_HOLD_MIN = 30  # a stalled expert holds still for at least this many steps
FAILURE_VARIANTS = 20  # other variants tried for a failure whose object is never touched
RANDOM_STEPS = 150
STILL_M = 0.01  # an object that moves less than this never moved (metres, or joint units)


def reached_key_frames(task: TaskSpec, trace: SimTrace, success: bool) -> list[int]:
    """Frame 0 plus the end of each key step reached in order in an episode that need not succeed; the last step
    counts only at a success."""
    key_frames = [0]
    for k, step in enumerate(task.steps):
        if k == len(task.steps) - 1 and not success:
            break
        end = next((t for t in range(key_frames[-1] + 1, len(trace)) if step.detector(trace.at(t))), None)
        if end is None:
            break
        key_frames.append(end)
    return key_frames


def rollout_other(task: TaskSpec | str, seed: int, kind: str, stall_step: int | None = None,
                  pool: EnvPool | None = None) -> Episode | None:
    """Episodes that are not a clean success (`sim export-videos`). `expert` with `stall_step` k: the expert of
    `seed` until key step k ends, then holding still (no motion, the gripper as it was) for as long as the rest of the
    task took (at least STALL_HOLD_MIN steps). `failure`: the expert's motions of `seed` replayed on another variant,
    the first whose task object (and fixture) never moves. `random`: uniform random actions for RANDOM_STEPS steps.
    `failure` on the episode says what it is; None when the expert of `seed` fails or no variant keeps still."""
    spec = get_task(task) if isinstance(task, str) else task
    if kind == "random":
        actions = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(RANDOM_STEPS, 4)).astype(np.float32)
        return _replay(spec, seed, actions, pool, "a random policy")
    expert = rollout(spec, seed, pool=pool)
    if expert is None:
        return None
    if kind == "expert":
        steps = len(spec.steps)
        if stall_step is None or not 1 <= stall_step < steps:
            raise ValueError(f"stall_step must be in 1..{steps - 1} for {spec.name}, got {stall_step!r}")
        stop = expert.key_frames[stall_step]
        hold = np.zeros((min(max(expert.n_steps - stop, STALL_HOLD_MIN), MAX_EPISODE_STEPS - stop), 4), np.float32)
        hold[:, 3] = expert.actions[stop - 1, 3]  # the gripper keeps its grip
        actions = np.concatenate([expert.actions[:stop], hold])
        return _replay(spec, seed, actions, pool, f"the expert stalled after step {stall_step}", stall=stop)
    if kind == "failure":
        for offset in range(1, FAILURE_VARIANTS + 1):
            episode = _replay(spec, seed + offset * 1_000, expert.actions, pool,
                              f"the expert's motions of seed {seed} on another variant: the object is never moved")
            trace = episode.trace
            moved = max(float(np.abs(trace.obj - trace.obj[0]).max()), float(np.abs(trace.obj2 - trace.obj2[0]).max()),
                        float(np.abs(trace.joint).max()))
            if not episode.success and moved < STILL_M:
                return episode
        return None
    raise ValueError(f"unknown rollout kind {kind!r}; valid kinds: expert (with stall_step), failure, random")


def _replay(spec: TaskSpec, seed: int, actions: np.ndarray, pool: EnvPool | None, what: str,
            stall: int | None = None) -> Episode:
    """`actions` played open-loop on the variant of `seed` (no stop at success before `stall`'s hold)."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    env, _ = pool.acquire(spec.name, seed) if pool is not None else _new_env(spec.name, seed)
    joint_address = int(env.model.jnt_qposadr[env.model.joint(spec.joint).id]) if spec.joint else None
    state_bits = state_spec()
    size = mujoco.mj_stateSize(env.model, state_bits)
    states, rows = [_get_state(env, state_bits, size)], [_snapshot(env, joint_address, None)]
    success = False
    try:
        for action in actions:
            _, _, _, truncated, info = env.step(action)
            states.append(_get_state(env, state_bits, size))
            rows.append(_snapshot(env, joint_address, info))
            success = success or bool(info["success"])
            if truncated:
                break
    finally:
        if pool is not None:
            pool.release(spec.name, env)
        else:
            env.close()
    trace = SimTrace.from_rows(rows)
    if joint_address is not None:
        trace.joint -= trace.joint[0]
    n = len(states) - 1
    key_frames = reached_key_frames(spec, trace, success and stall is None)
    if stall is not None:  # nothing is done after the stall, whatever a detector reads while the arm holds
        key_frames = [f for f in key_frames if f <= stall]
    return Episode(task=spec.name, seed=int(seed), success=False, n_steps=n, states=np.stack(states),
                   actions=np.asarray(actions[:n], dtype=np.float32), trace=trace,
                   key_frames=key_frames,
                   step_descriptions=spec.step_descriptions, state_spec=state_bits,
                   failure=what if stall is None else f"{what} (frame {stall})")
