"""ProgressReward on a real Meta-World env: shaping maths, background scoring, batching, flush, N/A, errors.

Most tests drive `handle-press-side-v3` with its scripted expert and a render callable that paints
each frame with a grey level encoding a scripted progress for the env's step; `ScriptedBackend`
reads that level back, so every frame's answer is known whatever the batching. The backend can be
held (it blocks inside `generate` until released), which makes "step returned while the backend was
busy" and "frames queued up into one batch" logical checks rather than timings.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("metaworld")  # the sim extra (MuJoCo, Meta-World, gymnasium)

import gymnasium  # noqa: E402
from gymnasium.wrappers import TimeLimit  # noqa: E402

from progresslm.backends.base import Backend, BackendOptions, Reply  # noqa: E402
from progresslm.online import ProgressScorer  # noqa: E402
from progresslm.online.reward import (  # noqa: E402
    MetaWorldCamera,
    ProgressReward,
    ProgressRewardError,
    ScoringWorker,
    demo_from_expert,
)
from progresslm.sim.metaworld.rollout import make_env  # noqa: E402
from progresslm.sim.metaworld.tasks import get_task  # noqa: E402

TASK = "handle-press-side-v3"  # the expert succeeds in 39 steps
NA = None
# Progress of the frame after t steps; None is an N/A answer. Values are multiples of 1/200.
SCRIPT = [0.1, 0.2, 0.15, NA, 0.4, 0.5, 0.5, 0.3]
DEMO = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]


def encode(progress: float | None) -> int:
    return 255 if progress is None else round(progress * 200)


class ScriptedFrames:
    """render(env): a small frame whose grey level encodes `script[step]`."""

    def __init__(self, script: list[float | None]):
        self.script = script

    def __call__(self, env: gymnasium.Env) -> np.ndarray:
        return np.full((16, 16, 3), encode(self.script[env.unwrapped.curr_path_length]), np.uint8)


class ScriptedBackend(Backend):
    """Answers the progress painted into each observation; `hold()` makes `generate` wait for `release()`."""

    def __init__(self, fail: bool = False):
        super().__init__(BackendOptions(), "two-stage")
        self.batches: list[int] = []
        self.busy = False
        self.entered = threading.Event()  # set when a generate call starts
        self._open = threading.Event()
        self._open.set()
        self.fail = fail

    def hold(self) -> None:
        self._open.clear()
        self.entered.clear()

    def release(self) -> None:
        self._open.set()

    def generate(self, requests):
        self.busy = True
        self.entered.set()
        try:
            assert self._open.wait(10), "test never released the backend"
            self.batches.append(len(requests))
            if self.fail:
                raise RuntimeError("model exploded")
            for index, request in enumerate(requests):
                with Image.open(request.prompt.images[-1]) as image:
                    level = image.getpixel((0, 0))[0]
                score = "n/a" if level == 255 else f"{level / 2:g}%"
                yield index, Reply(text=f"<ref>1</ref><score>{score}</score>")
        finally:
            self.busy = False


def make_wrapper(backend, steps: int = 6, script=SCRIPT, **kwargs) -> ProgressReward:
    env = RecordReward(TimeLimit(make_env(TASK, 0), max_episode_steps=steps))
    kwargs.setdefault("render", ScriptedFrames(script))
    return ProgressReward(env, DEMO, backend, goal="press the handle", **kwargs)


def start_held(steps: int, **kwargs):
    """A wrapper whose backend holds its first call: reset, and wait until the reset frame is being
    scored. Returns (backend, wrapper, expert, obs, info)."""
    backend = ScriptedBackend()
    wrapper = make_wrapper(backend, steps=steps, **kwargs)
    expert = Expert()
    backend.hold()
    obs, info = wrapper.reset()
    assert backend.entered.wait(10)  # the reset frame is being scored (and held)
    return backend, wrapper, expert, obs, info


class RecordReward(gymnasium.Wrapper):
    """Keeps the rewards of the env below the wrapper."""

    def step(self, action):
        out = super().step(action)
        self.rewards.append(out[1])
        return out

    def reset(self, **kwargs):
        self.rewards = []
        return super().reset(**kwargs)


class Expert:
    def __init__(self):
        from metaworld.policies import ENV_POLICY_MAP

        self.policy = ENV_POLICY_MAP[TASK]()

    def __call__(self, obs) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            return self.policy.get_action(obs)


def run_episode(wrapper: ProgressReward) -> tuple[list[float], list[dict]]:
    """Rewards and infos of one expert episode up to the time limit."""
    expert = Expert()
    obs, info = wrapper.reset()
    rewards, infos = [], []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = wrapper.step(expert(obs))
        rewards.append(reward)
        infos.append(info)
        done = terminated or truncated
    return rewards, infos


# --------------------------------------------------------------------------- shaping maths

# SCRIPT = 0.1, 0.2, 0.15, N/A, 0.4, 0.5, 0.5 for frames 0..6 (frame 0: the reset baseline)
EXPECTED = {
    ("delta", 1): [0.1, -0.05, 0.0, 0.25, 0.1, 0.0],
    ("absolute", 1): [0.2, 0.15, 0.0, 0.4, 0.5, 0.5],
    ("pbrs", 1): [0.0, -0.125, 0.0, 0.05, -0.15, -0.25],  # gamma 0.5: 0.5 * new - previous
    ("delta", 2): [0.0, 0.05, 0.0, 0.25, 0.0, 0.1],  # frames 0, 2, 4, 6 scored
    ("delta", 4): [0.0, 0.0, 0.0, 0.3, 0.0, 0.1],  # frames 0, 4 and the last (6)
}


@pytest.mark.parametrize("shaping, every", list(EXPECTED))
def test_shaping_maths_when_scoring_synchronously(shaping, every):
    wrapper = make_wrapper(ScriptedBackend(), shaping=shaping, every=every, gamma=0.5, asynchronous=False)
    rewards, infos = run_episode(wrapper)
    env_rewards = wrapper.env.rewards
    wrapper.close()
    shaped = [info["progress_reward"] for info in infos]
    assert shaped == pytest.approx(EXPECTED[shaping, every])
    assert rewards == pytest.approx([r + s for r, s in zip(env_rewards, shaped)])  # the env's reward is kept
    assert all(info["progress_pending"] == 0 for info in infos)
    last = infos[-1]
    assert last["progress"] == pytest.approx(0.5) and last["progress_stale_steps"] == 0
    assert last["progress_na"] == (1 if every == 1 else 0)


def test_scale_and_replace():
    wrapper = make_wrapper(ScriptedBackend(), scale=2.0, replace=True, asynchronous=False)
    rewards, infos = run_episode(wrapper)
    wrapper.close()
    assert rewards == pytest.approx([2 * s for s in EXPECTED["delta", 1]])
    assert [info["progress_reward"] for info in infos] == pytest.approx(rewards)


@pytest.mark.parametrize("shaping", ["delta", "absolute", "pbrs"])
def test_background_scoring_earns_the_same_episode_return(shaping):
    wrapper = make_wrapper(ScriptedBackend(), shaping=shaping, gamma=0.5)
    _, infos = run_episode(wrapper)
    wrapper.close()
    assert sum(info["progress_reward"] for info in infos) == pytest.approx(sum(EXPECTED[shaping, 1]))
    assert infos[-1]["progress_pending"] == 0 and infos[-1]["progress_scored"] == 7


def test_n_a_answers_give_no_shaping_and_are_counted():
    wrapper = make_wrapper(ScriptedBackend(), script=[NA] * 7, asynchronous=False, shaping="absolute")
    rewards, infos = run_episode(wrapper)
    env_rewards = wrapper.env.rewards
    wrapper.close()
    assert rewards == pytest.approx(env_rewards)
    assert [info["progress_na"] for info in infos] == [2, 3, 4, 5, 6, 7]
    assert all(info["progress"] is None and info["progress_stale_steps"] is None for info in infos)


# --------------------------------------------------------------------------- background scoring


def test_step_does_not_wait_for_a_busy_backend_and_frames_queue_into_one_batch():
    backend, wrapper, expert, obs, info = start_held(7, max_batch=8)
    assert info["progress"] is None and info["progress_pending"] == 1
    for step in range(1, 6):
        obs, _, _, _, info = wrapper.step(expert(obs))
        assert backend.busy, "step() returned only after the backend finished"
        assert info["progress_reward"] == 0.0 and info["progress_pending"] == step + 1
    backend.release()
    assert wrapper.wait(10)
    assert backend.batches == [1, 5]  # frames 1-5 queued while frame 0 was scored: one batch

    backend.hold()
    obs, _, _, _, info = wrapper.step(expert(obs))  # step 6 applies frames 0-5; frame 6 is held
    assert backend.entered.wait(10)
    assert info["progress_reward"] == pytest.approx(0.5 - 0.1)
    assert info["progress"] == pytest.approx(0.5) and info["progress_stale_steps"] == 1
    assert info["progress_pending"] == 1 and info["progress_na"] == 1
    backend.release()
    obs, _, _, truncated, info = wrapper.step(expert(obs))  # step 7 ends the episode: flush
    assert truncated and info["progress_pending"] == 0
    assert info["progress_reward"] == pytest.approx(0.3 - 0.5)
    assert backend.batches == [1, 5, 1, 1]
    wrapper.close()


def test_the_episode_return_is_final_minus_initial_progress_after_a_flush():
    backend, wrapper, expert, obs, _ = start_held(7)
    total = 0.0
    for _ in range(6):
        obs, _, _, _, info = wrapper.step(expert(obs))
        total += info["progress_reward"]
    assert total == 0.0 and info["progress_pending"] == 7
    backend.release()
    obs, _, _, truncated, info = wrapper.step(expert(obs))  # the last step waits for all 8 frames
    total += info["progress_reward"]
    assert truncated and info["progress_pending"] == 0
    assert total == pytest.approx(SCRIPT[7] - SCRIPT[0])
    wrapper.close()


def test_two_envs_share_one_worker_and_batch():
    backend = ScriptedBackend()
    first = make_wrapper(backend, steps=20)
    second_script = [0.9 - 0.05 * t for t in range(21)]
    second_env = TimeLimit(make_env(TASK, 1), max_episode_steps=20)
    second = ProgressReward(second_env, None, first.worker, render=ScriptedFrames(second_script))
    expert = Expert()
    backend.hold()
    obs_a, _ = first.reset()
    assert backend.entered.wait(10)
    obs_b, _ = second.reset()
    for _ in range(2):
        obs_a, *_ = first.step(expert(obs_a))
        obs_b, *_ = second.step(expert(obs_b))
    backend.release()
    assert first.wait(10) and second.wait(10)
    assert backend.batches == [1, 5]  # second's 3 frames and first's 2 in one call
    backend.hold()  # frames of step 3 stay pending: each env sees its own frame 2
    *_, info_a = first.step(expert(obs_a))
    *_, info_b = second.step(expert(obs_b))
    assert info_a["progress"] == pytest.approx(SCRIPT[2])
    assert info_b["progress"] == pytest.approx(second_script[2])
    assert info_b["progress_reward"] == pytest.approx(second_script[2] - second_script[0])
    backend.release()
    first.close()
    assert not second.worker.closed  # the second env still uses it
    second.close()
    assert second.worker.closed


def test_reset_drops_the_previous_episode_s_pending_frames():
    backend, wrapper, expert, obs, _ = start_held(7)
    for _ in range(3):
        obs, *_ = wrapper.step(expert(obs))
    backend.release()
    obs, info = wrapper.reset()
    assert info["progress_scored"] == 0 and info["progress_na"] == 0
    assert wrapper.wait(10)
    backend.hold()
    *_, info = wrapper.step(expert(obs))
    assert info["progress_scored"] == 1 and info["progress_pending"] == 1  # the new reset frame only
    assert info["progress"] == pytest.approx(SCRIPT[0]) and info["progress_reward"] == 0.0
    backend.release()
    wrapper.close()


# --------------------------------------------------------------------------- a real backend


def test_pixel_nn_on_rendered_frames_of_an_expert_episode():
    demo = demo_from_expert(TASK, seed=0, camera="corner2", size=64)
    assert demo.goal == get_task(TASK).goal and len(demo.keyframes) == len(demo.steps) + 1
    assert demo.keyframes[0].shape == (64, 64, 3)
    env = TimeLimit(make_env(TASK, 0), max_episode_steps=demo.frame_indices[-1])
    with MetaWorldCamera(env, "corner2", 64, framing=demo.framing) as camera:
        wrapper = ProgressReward(env, demo, "pixel-nn", every=5, render=camera, max_batch=4)
        assert wrapper.worker.scorer.goal == get_task(TASK).goal
        rewards, infos = run_episode(wrapper)
        wrapper.close()
    # the same seed replays the demonstration: its last frame is the last keyframe (progress 1)
    assert infos[-1]["progress"] == pytest.approx(1.0)
    assert sum(info["progress_reward"] for info in infos) == pytest.approx(1.0)
    assert infos[-1]["progress_scored"] == len(infos) // 5 + 1 + (len(infos) % 5 != 0)


def test_the_goal_of_a_meta_world_env_is_found():
    wrapper = ProgressReward(make_env(TASK, 0), DEMO, ScriptedBackend(), render=ScriptedFrames(SCRIPT))
    assert wrapper.worker.scorer.goal == get_task(TASK).goal
    wrapper.close()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"every": 0}, r"every: expected an integer >= 1, got 0"),
        ({"every": 2.5}, r"every: expected an integer"),
        ({"shaping": "linear"}, r"shaping: 'linear' is not one of delta, absolute, pbrs"),
        ({"gamma": 0.0}, r"gamma: the discount must be in \(0, 1\]"),
        ({"scale": float("nan")}, r"scale: expected a finite number"),
        ({"max_batch": 0}, r"max_batch: expected an integer >= 1"),
        ({"max_pending": -1}, r"max_pending: expected an integer >= 1"),
        ({"flush_timeout_s": 0}, r"flush_timeout_s: expected a positive number"),
        ({"render": "corner2"}, r"render: expected a callable"),
        ({"render": None}, r"render: env.render_mode is None.*render_mode='rgb_array'.*MetaWorldCamera"),
        ({"options": BackendOptions()}, r"options: only used to build a backend from its name"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, pattern):
    with pytest.raises(ProgressRewardError, match=pattern):
        make_wrapper(ScriptedBackend(), **kwargs)


def test_bad_env_backend_and_demo():
    env = make_env(TASK, 0)
    render = ScriptedFrames(SCRIPT)
    with pytest.raises(ProgressRewardError, match="env: expected a gymnasium.Env, got object"):
        ProgressReward(object(), DEMO, ScriptedBackend())
    with pytest.raises(ProgressRewardError, match="backend: expected a backend name, a Backend"):
        ProgressReward(env, DEMO, 3, render=render)
    with pytest.raises(ProgressRewardError, match="demo: give keyframe images"):
        ProgressReward(env, None, ScriptedBackend(), render=render)
    with pytest.raises(ValueError, match="unknown backend 'gpt-17'; valid backends: "):
        ProgressReward(env, DEMO, "gpt-17", render=render)
    with ScoringWorker(ProgressScorer("press the handle", DEMO, ScriptedBackend())) as worker:
        with pytest.raises(ProgressRewardError, match="pass demo=None"):
            ProgressReward(env, DEMO, worker, render=render)
    with pytest.raises(ProgressRewardError, match="the shared ScoringWorker is closed"):
        ProgressReward(env, None, worker, render=render)
    with pytest.raises(ValueError, match="unknown sim task .fly-v3.; valid tasks: "):
        demo_from_expert("fly-v3")


def test_bad_frames_failed_scoring_and_a_closed_wrapper():
    wrapper = make_wrapper(ScriptedBackend(), render=lambda env: np.zeros((16, 16)))
    bad_shape = r"render at step 0: expected an H x W x 3 uint8 array, got \(16, 16\)"
    with pytest.raises(ProgressRewardError, match=bad_shape):
        wrapper.reset()
    wrapper.close()
    with pytest.raises(ProgressRewardError, match="this ProgressReward is closed"):
        wrapper.step(np.zeros(4))

    wrapper = make_wrapper(ScriptedBackend(fail=True))
    wrapper.reset()
    assert wrapper.wait(10)
    with pytest.raises(ProgressRewardError, match="scoring the frame of step 0 failed: RuntimeError: model exploded"):
        wrapper.step(np.zeros(4))
    wrapper.close()
