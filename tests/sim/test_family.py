"""The simulator-family contract: a lazy registry, unique task names, cross-view camera pairs, and Meta-World's
failure and stalled-expert rollouts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from progresslm.sim.family import (
    CameraSet,
    UnknownFamilyError,
    all_tasks,
    family_of,
    get_family,
    progress_labels,
)
from progresslm.sim.samples import view_pair


def test_the_contract_module_imports_no_simulator():
    code = ("import sys, progresslm.sim.family, progresslm.sim.samples, progresslm.sim.sim_build; "
            "print(sorted(m for m in ('mujoco', 'metaworld', 'pybullet', 'progresslm.sim.metaworld.family') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_registry_finds_families_and_tasks():
    assert family_of("push-v3") == "metaworld"
    tasks = all_tasks()
    assert tasks["push-v3"].object_name == "puck" and len(tasks["push-v3"].step_descriptions) == 3
    with pytest.raises(UnknownFamilyError, match="valid families: metaworld"):
        get_family("robosuite")
    with pytest.raises(UnknownFamilyError, match="unknown sim task 'no-such-task'"):
        family_of("no-such-task")


def test_progress_labels_are_linear_between_key_frames():
    assert progress_labels([0, 4, 6], 7).tolist() == [0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0]


class _Family:
    cameras = CameraSet(wide=("front", "side"), close=("near",))


def test_cross_view_pairs_a_wide_camera_with_a_close_one():
    for seed in range(20):
        obs, demo = view_pair(_Family, ("front", "side", "near"), np.random.default_rng(seed))
        assert {_Family.cameras.kind(obs), _Family.cameras.kind(demo)} == {"wide", "close"}


def test_meta_world_failure_and_stall():
    pytest.importorskip("metaworld")
    from progresslm.sim.metaworld.rollout import STILL_M, rollout, rollout_other

    expert = rollout("pick-place-v3", 3)
    stalled = rollout_other("pick-place-v3", 3, "expert", stall_step=1)
    stop = expert.key_frames[1]
    assert stalled.key_frames == expert.key_frames[:2] and not stalled.ok
    assert np.allclose(stalled.states[: stop + 1], expert.states[: stop + 1])
    assert np.abs(np.diff(stalled.trace.hand[stop + 5:], axis=0)).max() < 0.005  # it holds still
    failure = rollout_other("pick-place-v3", 3, "failure")
    assert failure is not None and not failure.ok and failure.key_frames[-1] < expert.key_frames[-1]
    assert np.abs(failure.trace.obj - failure.trace.obj[0]).max() < STILL_M
