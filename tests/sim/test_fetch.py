"""The Fetch family (gymnasium-robotics -v4): experts' key steps from state, failure/stall rollouts, rendering without
goal markers, deterministic units. Skipped where gymnasium-robotics (pip install -e '.[fetch]') is missing."""

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("gymnasium_robotics") is None:
    pytest.skip("gymnasium-robotics not installed: pip install -e '.[fetch]'", allow_module_level=True)

os.environ.setdefault("MUJOCO_GL", "egl")

from progresslm.sim.fetch.rollout import FetchEnvs, restore, rollout  # noqa: E402
from progresslm.sim.fetch.tasks import FETCH_TASKS, get_fetch_task  # noqa: E402


@pytest.fixture(scope="module")
def envs():
    pool = FetchEnvs()
    yield pool
    pool.close()


@pytest.mark.parametrize("task", ["fetch-pick-and-place", "fetch-push", "fetch-place-and-release"])
def test_expert_key_steps_follow_the_state(task, envs):
    episode = rollout(task, 3, envs=envs)
    assert episode.ok, episode.failure
    spec = get_fetch_task(task)
    assert len(episode.key_frames) == len(spec.steps) + 1
    assert all(b - a >= 2 for a, b in zip(episode.key_frames, episode.key_frames[1:]))
    assert episode.key_frames[-1] == episode.n_frames - 1  # ends at success
    tr = episode.trace
    if spec.expert in ("pick", "place"):
        reach, grasp, lift = episode.key_frames[1:4]
        assert np.linalg.norm(tr.tcp[reach] - tr.obj[reach]) < 0.015
        assert tr.fingers[grasp] < 0.056 and tr.fingers[reach] > 0.06  # open on arrival, closed on the block
        assert tr.obj[lift][2] - tr.obj[0][2] > 0.03 and tr.obj[reach][2] - tr.obj[0][2] < 0.01
    assert np.linalg.norm(tr.obj[-1][:2] - tr.goal[-1][:2]) < 0.03


def test_failure_never_moves_the_object_and_stall_holds(envs):
    failure = rollout("fetch-pick-and-place", 3, "failure", envs=envs)
    assert not failure.ok and np.linalg.norm(failure.trace.obj[-1] - failure.trace.obj[0]) < 0.005
    assert len(failure.key_frames) == 1  # not even reached
    stall = rollout("fetch-pick-and-place", 3, "expert", stall_step=2, envs=envs)
    assert stall.stall_frame == stall.key_frames[2] and len(stall.key_frames) == 3
    held = stall.trace.tcp[stall.stall_frame + 5 :]
    assert np.ptp(held, axis=0).max() < 0.01  # holds still after the stall


def test_restored_state_renders_identically_and_hides_the_goal(envs):
    from progresslm.sim.fetch.scene import FetchRenderer

    task = get_fetch_task("fetch-reach")
    episode = rollout(task, 4, envs=envs)
    env = envs.get(task, 4)
    env._render_callback()  # puts the red target0 sphere at the goal, as env.render() would
    renderer = FetchRenderer(env.model, 96)
    try:
        restore(env, episode.states[0])
        first = renderer.render(env.data, "fetch_close")
        restore(env, episode.states[-1])
        restore(env, episode.states[0])
        assert np.array_equal(first, renderer.render(env.data, "fetch_close"))
        # the goal site is drawn by a plain option (sites shown) and not by ours
        import mujoco

        plain = mujoco.MjvOption()
        ours = renderer.scene_option
        renderer.scene_option = plain
        try:
            shown = renderer.render(env.data, "fetch_close")
        finally:
            renderer.scene_option = ours
        red = lambda img: ((img[..., 0] > 150) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum()  # noqa: E731
        assert red(shown) > 5 and red(first) == 0
    finally:
        renderer.close()


def test_every_task_is_listed_with_steps():
    from progresslm.sim.fetch.family import FAMILY

    tasks = FAMILY.tasks()
    assert len(tasks) >= 6 and set(tasks) == set(FETCH_TASKS)
    assert len({info.goal for info in tasks.values()}) == len(tasks)
    assert all(len(info.step_descriptions) >= 2 for info in tasks.values())


def test_unit_is_byte_identical_across_runs(tmp_path, monkeypatch):
    import progresslm.sim.family as family

    monkeypatch.setitem(family.FAMILIES, "fetch", "progresslm.sim.fetch.family:FAMILY")
    from progresslm.sim.fetch.family import FAMILY
    from progresslm.sim.samples import Unit, build_unit

    unit = Unit("bench", "fetch-pick-and-place", 0, "fetch-push", 0, 64, FAMILY.cameras.all, "default", 1, False,
                family="fetch")
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


def test_sim_build_family_fetch_makes_every_axis(tmp_path):
    """`sim build --family fetch` goes through the registry and the shared builder: every file stem has rows, the rows
    name their family, the card names the family's tasks."""
    import json

    from progresslm.bench.format import FILE_STEMS
    from progresslm.cli.main import main
    from progresslm.sim.family import all_tasks, family_of

    assert family_of("fetch-push") == "fetch" and set(FETCH_TASKS) <= set(all_tasks())
    out = tmp_path / "fetch"
    assert main(["sim", "build", "--family", "fetch", "--preset", "tiny", "--out", str(out), "--workers", "1",
                 "--quiet"]) in (0, None)
    rows = {stem: [json.loads(line) for line in (out / "bench" / f"{stem}.jsonl").read_text().splitlines()]
            for stem in FILE_STEMS}
    assert all(rows[stem] for stem in FILE_STEMS), {stem: len(r) for stem, r in rows.items()}
    assert {row["sim"]["family"] for stem in FILE_STEMS for row in rows[stem]} == {"fetch"}
    assert "fetch-" in (out / "card.md").read_text()
    card = json.loads((out / "card.json").read_text())
    family = card["per_family"]["fetch"]  # issue 26 item 3: counts per axis and kind, pixel-nn per family
    assert family["samples"]["bench"]["n"] == sum(len(r) for r in rows.values())
    assert family["samples"]["bench"]["axes"]["cross_view"] == len(rows["visual_cross_view"])
    assert sum(family["samples"]["bench"]["unanswerable_kinds"].values()) == family["samples"]["bench"]["axes"][
        "unanswerable"] > 0
    prc = family["baselines"]["pixel-nn"]["visual_same_view"]["prc"]
    assert family["pixel_nn_too_good"] == (prc is not None and prc > 70)
    assert "## Per simulator family" in (out / "card.md").read_text()


def test_sim_tasks_lists_a_family_with_its_extra(capsys):
    from progresslm.cli.main import main

    assert main(["sim", "tasks", "--family", "fetch", "--brief"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# fetch: 8 tasks; extra [fetch]") and len(lines) == 9
    assert main(["sim", "tasks", "--family", "no-such-family"]) == 2
