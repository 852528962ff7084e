"""The task registry: enough tasks, well-formed key steps, object geoms that exist in the models."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from progresslm.sim.metaworld.tasks import (
    SUCCESS,
    KeyStep,
    SimState,
    TaskSpec,
    Threshold,
    UnknownTaskError,
    above,
    all_of,
    below,
    get_task,
    list_tasks,
    object_geom_ids,
)

needs_metaworld = pytest.mark.skipif(importlib.util.find_spec("metaworld") is None, reason="metaworld not installed")


def _state(**overrides) -> SimState:
    values = dict(
        hand=np.array([0.0, 0.6, 0.2]),
        tcp=np.array([0.0, 0.6, 0.15]),
        gripper=1.0,
        obj=np.array([0.0, 0.6, 0.02]),
        obj2=np.zeros(3),
        goal=np.array([0.0, 0.8, 0.02]),
        obj_init=np.array([0.0, 0.6, 0.02]),
        obj2_init=np.zeros(3),
        joint=0.0,
    )
    values.update(overrides)
    return SimState(**values)


def test_registry_has_enough_tasks_with_enough_steps():
    names = list_tasks()
    assert len(names) >= 20
    assert len(set(names)) == len(names)
    for name in names:
        task = get_task(name)
        assert task.name == name and name.endswith("-v3")
        assert len(task.steps) >= 3
        assert task.steps[-1].detector == SUCCESS
        assert all(step.description and step.description == step.description.strip() for step in task.steps)
        assert task.object_geoms or task.object_bodies


def test_object_name_is_in_the_text_so_it_can_be_rewritten():
    for name in list_tasks():
        task = get_task(name)
        assert task.object_name in " ".join([task.goal, *task.step_descriptions]), name


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownTaskError) as error:
        get_task("pick-plaec-v3")
    message = str(error.value)
    assert "pick-plaec-v3" in message
    assert "pick-place-v3" in message and "drawer-open-v3" in message


def test_threshold_and_all_of_read_simstate_quantities():
    lifted = _state(obj=np.array([0.0, 0.6, 0.07]), tcp=np.array([0.0, 0.6, 0.075]))
    assert above("obj_lift", 0.04)(lifted) and not above("obj_lift", 0.04)(_state())
    assert below("tcp_to_obj", 0.01)(lifted) and not below("tcp_to_obj", 0.01)(_state())
    grasped = all_of(below("tcp_to_obj", 0.01), below("gripper", 0.5))
    assert not grasped(lifted) and grasped(_state(obj=lifted.obj, tcp=lifted.tcp, gripper=0.4))
    assert str(grasped) == "tcp_to_obj < 0.01 and gripper < 0.5"
    assert SUCCESS(_state(success=True)) and not SUCCESS(_state())


def test_simstate_quantities_by_hand():
    state = _state(obj=np.array([0.0, 0.7, 0.02]), joint=-0.05)
    assert state.obj_moved == pytest.approx(0.1)
    assert state.obj_to_goal == pytest.approx(0.1)
    assert state.goal_progress == pytest.approx(0.5)  # started 0.2 from the goal, now 0.1
    assert state.joint_moved == pytest.approx(0.05)
    assert state.obj_lift == pytest.approx(0.0)


def test_bad_detectors_and_specs_fail_with_a_reason():
    with pytest.raises(ValueError, match="unknown SimState quantity 'lift'"):
        Threshold("lift", ">", 0.1)
    steps = (KeyStep("reach the puck", below("tcp_to_obj", 0.02)), KeyStep("move the puck", SUCCESS))
    with pytest.raises(ValueError, match="at least 3"):
        TaskSpec("x-v3", "move the puck", "puck", steps, object_bodies=("obj",))
    backwards = (steps[1], steps[0], steps[0])
    with pytest.raises(ValueError, match="must end at success"):
        TaskSpec("x-v3", "move the puck", "puck", backwards, object_bodies=("obj",))


@needs_metaworld
def test_object_geoms_bodies_and_joints_exist_in_the_models():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    for name in list_tasks():
        task = get_task(name)
        env = ALL_V3_ENVIRONMENTS[name]()
        model = env.model
        for geom in task.object_geoms:
            model.geom(geom)  # raises KeyError when missing
        for body in task.object_bodies:
            model.body(body)
        if task.joint:
            model.joint(task.joint)
        ids = object_geom_ids(model, task)
        visible = [g for g in ids if model.geom_group[g] <= 2 and model.geom_rgba[g][3] > 0]
        assert visible, f"{name}: no visible geom among the object geoms {ids}"
        robot = {model.body(b).id for b in ("hand", "rightclaw", "leftclaw")}
        assert not robot & {int(model.geom_bodyid[g]) for g in ids}, f"{name}: object geoms include the gripper"
        env.close()
