"""Scripted rollouts: success, keyframes at detected step ends, labels, determinism, state restore."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from progresslm.sim.metaworld.rollout import (
    Episode,
    KeyStepNotFound,
    SimTrace,
    detect_key_frames,
    progress_labels,
)
from progresslm.sim.metaworld.tasks import SUCCESS, KeyStep, TaskSpec, UnknownTaskError, above, get_task

needs_metaworld = pytest.mark.skipif(importlib.util.find_spec("metaworld") is None, reason="metaworld not installed")

# One grasping task, one articulated task, one pushing task.
CASES = [("pick-place-v3", 0), ("drawer-open-v3", 1), ("push-v3", 2)]


def _trace(obj_z: list[float], success_at: int) -> SimTrace:
    """A synthetic trace whose object rises along `obj_z`; success from frame `success_at` on."""
    n = len(obj_z)
    obj = np.zeros((n, 3), dtype=np.float32)
    obj[:, 2] = obj_z
    zeros3, zeros = np.zeros((n, 3), dtype=np.float32), np.zeros(n, dtype=np.float32)
    return SimTrace(
        hand=zeros3, tcp=zeros3, obj=obj, obj2=zeros3, goal=zeros3, gripper=zeros, joint=zeros,
        obj_to_target=zeros, in_place_reward=zeros, grasp_reward=zeros,
        success=np.arange(n) >= success_at, near_object=np.zeros(n, bool), grasp_success=np.zeros(n, bool),
    )  # fmt: skip


LIFT_TASK = TaskSpec(
    "lift-v3",
    "lift the block",
    "block",
    (
        KeyStep("raise the block a little", above("obj_lift", 0.01)),
        KeyStep("raise the block more", above("obj_lift", 0.03)),
        KeyStep("finish", SUCCESS),
    ),
    object_bodies=("obj",),
)


def test_detect_key_frames_on_a_synthetic_trace():
    trace = _trace([0, 0, 0.005, 0.02, 0.02, 0.04, 0.05, 0.05, 0.05], success_at=8)
    assert detect_key_frames(LIFT_TASK, trace) == [0, 3, 5, 8]


def test_detect_key_frames_rejects_missing_and_too_short_steps():
    never_high = _trace([0, 0, 0.02, 0.02, 0.02], success_at=4)
    with pytest.raises(KeyStepNotFound, match="step 2 'raise the block more' not detected") as error:
        detect_key_frames(LIFT_TASK, never_high)
    assert error.value.found == [0, 2]
    too_short = _trace([0, 0, 0, 0.02, 0.04, 0.05, 0.05], success_at=6)  # step 2 ends 1 frame after step 1
    with pytest.raises(KeyStepNotFound, match="lasts 1 frame"):
        detect_key_frames(LIFT_TASK, too_short)


def test_progress_labels_by_hand():
    episode = Episode(
        task="lift-v3", seed=0, success=True, n_steps=8, states=np.zeros((9, 1)), actions=np.zeros((8, 4)),
        trace=_trace([0] * 9, 8), key_frames=[0, 2, 6, 8], step_descriptions=["a", "b", "c"], state_spec=0,
    )  # fmt: skip
    expected = [0, 1 / 6, 1 / 3, 5 / 12, 1 / 2, 7 / 12, 2 / 3, 5 / 6, 1]
    np.testing.assert_allclose(progress_labels(episode), expected, atol=1e-12)
    episode.failure = "step 2 not detected"
    with pytest.raises(ValueError, match="no complete key frames"):
        progress_labels(episode)


# --------------------------------------------------------------------------- real rollouts


@pytest.fixture(scope="module")
def episodes() -> dict[str, Episode]:
    pytest.importorskip("metaworld")
    from progresslm.sim.metaworld.rollout import rollout

    out = {}
    for name, seed in CASES:
        episode = rollout(name, seed)
        assert episode is not None, f"{name} seed {seed} failed"
        out[name] = episode
    return out


@needs_metaworld
@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_rollout_succeeds_with_keyframes_at_step_ends(episodes, name):
    episode = episodes[name]
    task = get_task(name)
    assert episode.ok and episode.success and episode.failure is None
    assert episode.n_frames == episode.n_steps + 1 == len(episode.states) == len(episode.trace)
    assert episode.actions.shape == (episode.n_steps, 4)
    keys = episode.key_frames
    assert len(keys) == len(task.steps) + 1 and keys[0] == 0 and keys[-1] == episode.n_steps
    assert all(b - a >= 2 for a, b in zip(keys, keys[1:]))
    assert episode.step_descriptions == task.step_descriptions
    trace = episode.trace
    assert trace.success[-1] and not trace.success[:-1].any()  # ends at the first success
    for k, step in enumerate(task.steps, start=1):  # each keyframe is the first frame its detector fires
        assert step.detector(trace.at(keys[k]))
        assert not any(step.detector(trace.at(t)) for t in range(keys[k - 1] + 1, keys[k]))


@needs_metaworld
@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_progress_labels_of_a_rollout(episodes, name):
    episode = episodes[name]
    labels = progress_labels(episode)
    steps = len(episode.key_frames) - 1
    assert labels.shape == (episode.n_frames,)
    assert labels[0] == 0 and labels[episode.key_frames[-1]] == 1
    assert np.all(np.diff(labels) >= 0)
    for i, frame in enumerate(episode.key_frames):
        assert labels[frame] == i / steps


@needs_metaworld
def test_same_seed_same_states_other_seed_other_positions(episodes):
    from progresslm.sim.metaworld.rollout import rollout

    name, seed = CASES[0]
    again = rollout(name, seed)
    first = episodes[name]
    assert np.array_equal(again.states, first.states)
    assert again.key_frames == first.key_frames
    other = rollout(name, seed + 1)
    assert not np.allclose(other.trace.obj[0], first.trace.obj[0], atol=1e-3)
    assert not np.allclose(other.trace.goal[0], first.trace.goal[0], atol=1e-3)
    far = rollout(name, seed + 50)  # next block of Meta-World variants
    assert not np.allclose(far.trace.obj[0], first.trace.obj[0], atol=1e-3)


@needs_metaworld
@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_restore_reproduces_body_positions(episodes, name):
    from progresslm.sim.metaworld.rollout import _new_env, make_env, restore

    episode = episodes[name]
    frames = sorted(set(episode.key_frames) | {episode.n_steps // 2})
    # reference: replay the stored actions in a fresh env and keep every body position
    env, _ = _new_env(name, episode.seed)
    reference = {0: env.data.xpos.copy()}
    for t, action in enumerate(episode.actions, start=1):
        env.step(action)
        if t in frames:
            reference[t] = env.data.xpos.copy()
    fresh = make_env(name, episode.seed)
    for t in frames:
        restore(fresh, episode.states[t])
        np.testing.assert_allclose(fresh.data.xpos, reference[t], atol=1e-9, err_msg=f"{name} frame {t}")
        np.testing.assert_allclose(fresh.data.body("hand").xpos, episode.trace.hand[t], atol=1e-5)
        np.testing.assert_allclose(fresh._get_pos_objects()[:3], episode.trace.obj[t], atol=1e-5)
    with pytest.raises(ValueError, match="was the env made with the episode's task"):
        restore(fresh, episode.states[0][:-1])


@needs_metaworld
def test_episodes_are_compact_and_picklable(episodes):
    episode = episodes["pick-place-v3"]
    blob = pickle.dumps(episode)
    assert len(blob) < 200_000
    back = pickle.loads(blob)
    assert np.array_equal(back.states, episode.states) and back.key_frames == episode.key_frames
    assert episode.states.dtype == np.float64 and episode.trace.obj.dtype == np.float32


@needs_metaworld
def test_failures_are_reported():
    from progresslm.sim.metaworld.rollout import make_env, rollout

    assert rollout("pick-place-v3", 0, max_steps=5) is None
    failed = rollout("pick-place-v3", 0, max_steps=5, keep_failures=True)
    assert not failed.success and not failed.ok and "did not succeed in 5 steps" in failed.failure
    with pytest.raises(UnknownTaskError, match="valid tasks: .*pick-place-v3"):
        make_env("pick-place-v9", 0)
    with pytest.raises(ValueError, match="non-negative"):
        make_env("pick-place-v3", -1)
    with pytest.raises(ValueError, match="max_steps"):
        rollout("pick-place-v3", 0, max_steps=501)
