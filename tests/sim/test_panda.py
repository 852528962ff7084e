"""The panda family (panda-gym on PyBullet): experts' key steps from state, failure/stall rollouts, rendering without
goal markers, deterministic episodes and units, a tiny `sim build --family panda`. Skipped where panda-gym
(pip install -e '.[panda]') is missing."""

import importlib.util
import json

import numpy as np
import pytest

if importlib.util.find_spec("panda_gym") is None or importlib.util.find_spec("pybullet") is None:
    pytest.skip("panda-gym not installed: pip install -e '.[panda]'", allow_module_level=True)

from progresslm.sim.panda.rollout import rollout, set_state  # noqa: E402
from progresslm.sim.panda.scene import PandaRenderer  # noqa: E402
from progresslm.sim.panda.tasks import PANDA_TASKS, get_panda_task  # noqa: E402


@pytest.fixture(scope="module")
def reach_renderer():
    renderer = PandaRenderer("reach")
    yield renderer
    renderer.close()


def green(image: np.ndarray) -> int:
    """Pixels of panda-gym's green ghost colour (green well above red and blue)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((g > r + 40) & (g > b + 40)).sum())


@pytest.mark.parametrize("task", ["panda-pick-and-place", "panda-push", "panda-stack"])
def test_expert_key_steps_follow_the_state(task):
    episode = rollout(task, 3)
    assert episode.ok, episode.failure
    spec = get_panda_task(task)
    assert len(episode.key_frames) == len(spec.steps) + 1
    assert all(b - a >= 2 for a, b in zip(episode.key_frames, episode.key_frames[1:]))
    assert episode.key_frames[-1] == episode.n_frames - 1  # ends at success
    tr = episode.trace
    if spec.expert in ("pick", "place"):
        reach, grasp, lift = episode.key_frames[1:4]
        assert np.linalg.norm(tr.tcp[reach] - tr.obj[reach]) < 0.012
        assert tr.fingers[grasp] < 0.045 and tr.fingers[reach] > 0.06  # open on arrival, closed on the cube
        assert tr.obj[lift][2] - tr.obj[0][2] > 0.03 and tr.obj[reach][2] - tr.obj[0][2] < 0.01
    if task == "panda-stack":  # the blue cube ends on the green one, which stayed put
        assert np.linalg.norm(tr.obj[-1] - (tr.other[-1] + [0, 0, 0.04])) < 0.015
        assert np.linalg.norm(tr.other[-1] - tr.other[0]) < 0.01
    else:
        assert np.linalg.norm(tr.obj[-1][:2] - tr.goal[-1][:2]) < 0.03


def test_failure_never_moves_the_object_and_stall_holds():
    failure = rollout("panda-pick-and-place", 3, "failure")
    assert not failure.ok and np.linalg.norm(failure.trace.obj[-1] - failure.trace.obj[0]) < 0.005
    assert len(failure.key_frames) == 1  # not even reached
    random = rollout("panda-push", 3, "random")
    assert not random.ok and random.failure == "random policy"
    stall = rollout("panda-pick-and-place", 3, "expert", stall_step=2)
    assert stall.stall_frame == stall.key_frames[2] and len(stall.key_frames) == 3
    held = stall.trace.tcp[stall.stall_frame + 5 :]
    assert np.ptp(held, axis=0).max() < 0.01  # holds still after the stall
    with pytest.raises(ValueError, match="stall_step must be in 1..3"):
        rollout("panda-pick-and-place", 3, "expert", stall_step=4)


def test_a_seed_gives_the_same_episode_whatever_ran_before():
    first = rollout("panda-push", 7)
    rollout("panda-push", 8)
    rollout("panda-pick-and-place", 7, "random")
    again = rollout("panda-push", 7)
    assert np.array_equal(first.states, again.states) and first.key_frames == again.key_frames
    other = rollout("panda-push", 8)
    assert not np.array_equal(first.states[0], other.states[0])  # another seed, another variant


def test_goal_ghosts_never_show_and_renders_do_not_depend_on_history(reach_renderer):
    episode = rollout("panda-reach", 4)
    renderer = reach_renderer
    goal = episode.trace.goal[0]
    pose = (tuple(goal), 0.5, 45.0, -30.0)

    def draw():
        return renderer._raw(*pose, 96)

    set_state(renderer.env, episode.states[0])
    first = draw()
    set_state(renderer.env, episode.states[-1])
    draw()
    set_state(renderer.env, episode.states[0])
    assert np.array_equal(first, draw())
    # the ghost sphere drawn as panda-gym ships it (translucent green at the goal) shows; ours never does
    ghost = renderer.bodies["target"]
    client = renderer.client
    client.resetBasePositionAndOrientation(ghost, goal.tolist(), (0.0, 0.0, 0.0, 1.0))
    client.changeVisualShape(ghost, -1, rgbaColor=[0.1, 0.9, 0.1, 0.3])
    try:
        shown = draw()
    finally:
        client.changeVisualShape(ghost, -1, rgbaColor=[0.0, 0.0, 0.0, 0.0])
        client.resetBasePositionAndOrientation(ghost, (0.0, 0.0, -5.0), (0.0, 0.0, 0.0, 1.0))
    assert green(shown) > 20 and green(first) == 0


def test_styles_and_edits_leave_the_scene_as_it_was():
    from progresslm.sim.panda.family import FAMILY

    worker = FAMILY.worker()
    try:
        episode = worker.rollout("panda-pick-and-place", 2)
        scene = worker.scene(episode, 96, FAMILY.cameras.all)
        scene.frame([episode])
        plain = scene.render(10, "panda_close")[0]
        scene.style = worker.sample_style("strong", scene, np.random.default_rng(1))
        assert scene.style.distractors and scene.style.to_dict()["level"] == "strong"
        styled = scene.render(10, "panda_close")[0]
        rng = np.random.default_rng(0)
        records = {kind: scene.render(10, "panda_close", edit=(kind, rng))[1] for kind in FAMILY.edit_kinds}
        assert records["recolor"]["colour"] != "green" and records["replace"]["shape"] in ("sphere", "cylinder")
        assert not np.array_equal(plain, styled)
        assert np.array_equal(styled, scene.render(10, "panda_close")[0])  # edits undone
        scene.style = None
        assert np.array_equal(plain, scene.render(10, "panda_close")[0])  # style undone
        with pytest.raises(ValueError, match="valid kinds: recolor, hide, replace"):
            scene.render(10, "panda_close", edit=("melt", rng))
    finally:
        worker.close()


def test_every_task_is_listed_with_steps():
    from progresslm.sim.family import family_of
    from progresslm.sim.panda.family import FAMILY

    tasks = FAMILY.tasks()
    assert len(tasks) >= 6 and set(tasks) == set(PANDA_TASKS)
    assert len({info.goal for info in tasks.values()}) == len(tasks)
    assert all(len(info.step_descriptions) >= 2 for info in tasks.values())
    assert all(info.object_name in info.goal for info in tasks.values() if info.object_name != "gripper")
    assert family_of("panda-stack") == "panda"
    assert {FAMILY.cameras.kind(c) for c in FAMILY.cameras.all} == {"wide", "close"}


def test_unit_is_byte_identical_across_runs(tmp_path):
    from progresslm.sim.panda.family import FAMILY
    from progresslm.sim.samples import Unit, build_unit

    unit = Unit("bench", "panda-pick-and-place", 0, "panda-push", 0, 64, FAMILY.cameras.all, "default", 1, False,
                family="panda")
    outs = []
    for run in range(2):
        worker = FAMILY.worker()
        try:
            result = build_unit(unit, tmp_path / str(run), worker=worker)
        finally:
            worker.close()
        files = sorted(p for p in (tmp_path / str(run)).rglob("*") if p.is_file())
        outs.append((result.rows, [(p.relative_to(tmp_path / str(run)), p.read_bytes()) for p in files]))
    assert outs[0][0] == outs[1][0]
    assert outs[0][1] == outs[1][1] and len(outs[0][1]) > 5


def test_sim_build_family_panda_makes_every_axis(tmp_path, capfd):
    """`sim build --family panda` goes through the registry and the shared builder: every file stem has rows, the rows
    name their family, the card names the family's tasks and settings; pybullet's C-level chatter (connect options,
    EGL probe, about 20 lines per client) stays off the terminal."""
    from progresslm.bench.format import FILE_STEMS
    from progresslm.cli.main import main

    out = tmp_path / "panda"
    assert main(["sim", "build", "--family", "panda", "--preset", "tiny", "--out", str(out), "--workers", "1",
                 "--size", "96", "--quiet"]) in (0, None)
    rows = {stem: [json.loads(line) for line in (out / "bench" / f"{stem}.jsonl").read_text().splitlines()]
            for stem in FILE_STEMS}
    assert all(rows[stem] for stem in FILE_STEMS), {stem: len(r) for stem, r in rows.items()}
    assert {row["sim"]["family"] for stem in FILE_STEMS for row in rows[stem]} == {"panda"}
    assert "panda-" in (out / "card.md").read_text()
    card = json.loads((out / "card.json").read_text())
    assert card["families"] == ["panda"] and "panda" in card["per_family"]
    printed = capfd.readouterr()
    noise = [line for line in (printed.out + printed.err).splitlines()
             if line.startswith(("argv[", "EGL device", "Destroy EGL", "GL_VENDOR", "ven = ", "pybullet build"))]
    assert noise == [], noise[:5]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(PANDA_TASKS))
def test_experts_succeed_on_most_of_twenty_seeds(task):
    successes = sum(rollout(task, seed).ok for seed in range(20))
    assert successes >= 15, f"{task}: {successes}/20"
