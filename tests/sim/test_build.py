"""A tiny simulated build (2 tasks, 1 camera pair, 64 px) checked end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

from helpers import TINY_SIM_CAMERAS as CAMERAS
from helpers import tiny_sim_config as tiny

from progresslm.bench.format import load_bench
from progresslm.sim.samples import MIN_EDIT_CHANGE_PCT
from progresslm.sim.sim_build import SimBuildConfig, SimBuildError, assign_splits, build


@pytest.fixture(scope="module")
def built(tiny_sim_build):
    return tiny_sim_build


@pytest.fixture(scope="module")
def built_plain(built, tmp_path_factory):
    return build(tiny(tmp_path_factory.mktemp("sim") / "none", level="none"), progress=False)


def rows(outcome, split="bench"):
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in outcome.files[split]}


def test_the_official_loader_reads_every_axis(built):
    bench = load_bench(built.bench_files())
    assert {s.split for s in bench.samples} == {
        "visual_same_view", "visual_cross_view", "text", "visual_unanswerable", "text_unanswerable"}
    assert bench.defects == []
    for sample in bench.samples:
        for name in sample.image_names():
            assert sample.image_path(name, built.image_root).is_file()
    cross = [s for s in bench.samples if s.split == "visual_cross_view"]
    assert all(s.demo_camera != s.observation_camera and {s.demo_camera, s.observation_camera} <= set(CAMERAS)
               for s in cross)


def test_splits_have_disjoint_tasks(built):
    tasks = {split: {r["sim"]["task"] for stem in rows(built, split).values() for r in stem}
             for split in ("bench", "sft") if built.files[split]}
    assert tasks["bench"] and tasks["sft"] and not tasks["bench"] & tasks["sft"]
    manifest = json.loads((built.out / "build.json").read_text())["splits"]
    assert not set(manifest["bench"]) & set(manifest["sft"]) and not set(manifest["bench"]) & set(manifest["rl"])
    a = assign_splits([f"t{i}" for i in range(20)], 3, 5, 4)
    assert a == assign_splits([f"t{i}" for i in range(20)], 3, 5, 4) != assign_splits([f"t{i}" for i in range(20)], 4, 5, 4)


def test_labels_monotone_and_anchors_consistent(built):
    for split in ("bench", "sft"):
        same = rows(built, split)["visual_same_view"]
        by_episode = {}
        for r in same:
            by_episode.setdefault(r["id"], []).append(r)
        for episode in by_episode.values():
            episode.sort(key=lambda r: r["sim"]["obs_frame"])
            progress = [float(r["progress_score"].rstrip("%")) for r in episode]
            assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
            for r, p in zip(episode, progress):
                T = r["total_steps"]
                assert r["closest_idx"] == round(p / 100 * T) + 1
                assert float(r["delta"].rstrip("%")) == pytest.approx(p - (r["closest_idx"] - 1) / T * 100, abs=0.01)


def test_keyframes_sit_at_detected_step_ends(built):
    from progresslm.sim.metaworld.rollout import rollout

    r = rows(built)["visual_same_view"][0]
    sim = r["sim"]
    episode = rollout(sim["task"], sim["obs_seed"])
    T = len(episode.key_frames) - 1
    at_key = {row["sim"]["obs_frame"]: row for row in rows(built)["visual_same_view"] if row["id"] == r["id"]}
    for k, frame in enumerate(episode.key_frames):
        assert float(at_key[frame]["progress_score"].rstrip("%")) == pytest.approx(100 * k / T, abs=0.01)
    demo = rollout(sim["task"], sim["demo_seed"])
    assert r["visual_demo"] == [f"demo/{sim['demo_camera']}_{f:04d}.jpg" for f in demo.key_frames]


def _pixels(outcome, trajectory, name):
    from PIL import Image

    return np.asarray(Image.open(outcome.image_root / trajectory / name).convert("RGB"), dtype=np.float32)


def test_randomisation_changes_scene_pixels_not_labels(built, built_plain):
    default, plain = rows(built)["visual_same_view"], rows(built_plain)["visual_same_view"]
    assert [(r["id"], r["progress_score"], r["closest_idx"]) for r in default] == \
           [(r["id"], r["progress_score"], r["closest_idx"]) for r in plain]
    r = default[0]
    name = r["stage_to_estimate"][0]
    diff = np.abs(_pixels(built, r["id"], name) - _pixels(built_plain, r["id"], name)).mean(axis=2)
    assert diff.mean() > 3 and (diff > 10).mean() > 0.1  # a different look over much of the frame
    assert r["sim"]["obs_style"]["level"] == "default" and plain[0]["sim"]["obs_style"]["level"] == "none"


def test_every_edit_changes_the_object_locally(built):
    edits = [r for r in rows(built)["visual-unanswerable"] if r["sim"]["unanswerable"].startswith("edit_")]
    assert {r["sim"]["unanswerable"] for r in edits} == {"edit_recolor", "edit_hide", "edit_replace"}
    for r in edits:
        edited = r["stage_to_estimate"][0]
        diff = np.abs(_pixels(built, r["id"], edited) - _pixels(built, r["id"], edited.replace("_edit", ""))).max(axis=2)
        changed = (diff > 40).mean()
        assert 0 < changed < 0.3, (r["sim"]["unanswerable"], changed)
        assert r["closest_idx"] == r["progress_score"] == "n/a"
        # Each edit shows: measured on the exact renders at build time, recorded in the row.
        assert r["sim"]["edit"]["changed_pct"] >= MIN_EDIT_CHANGE_PCT
        assert abs(r["sim"]["edit"]["changed_pct"] - 100 * changed) < 2.0  # JPEG moves a few pixels only


def test_the_card_reports_how_visible_the_edits_are(built):
    card = json.loads((built.out / "card.json").read_text())
    visibility = card["edit_visibility"]
    assert set(visibility) <= {"edit_recolor", "edit_hide", "edit_replace"} and visibility
    for _kind, stats in visibility.items():
        assert stats["n"] + stats["not_made"] >= 1
        if stats["n"]:
            assert MIN_EDIT_CHANGE_PCT <= stats["min"] <= stats["median"] <= stats["max"]
    assert "Can the edits be seen?" in (built.out / "card.md").read_text()


def test_unanswerable_text_names_something_else(built):
    normal = {r["id"]: r for r in rows(built)["text-normal"]}
    for r in rows(built)["text-unanswerable"]:
        good = normal[r["id"]]
        assert (r["task_goal"], r["text_demo"]) != (good["task_goal"], good["text_demo"])
        assert r["sim"]["unanswerable"] in ("text_object", "other_task")


def test_resume_after_a_kill_rebuilds_only_what_is_missing(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built.out, out)
    (out / "DONE").unlink()
    victim = sorted((out / "units" / "bench").glob("*.json"))[0]
    victim.unlink()
    (out / "bench" / "visual_same_view.jsonl").write_text("half written")
    outcome = build(tiny(out), progress=False)
    assert outcome.built == 1
    assert rows(outcome)["visual_same_view"] == rows(built)["visual_same_view"]


def test_bad_input(tmp_path, built):
    with pytest.raises(SimBuildError, match="valid tasks: .*pick-place-v3"):
        SimBuildConfig(tasks=["juggle-v3"])
    with pytest.raises(SimBuildError, match="valid cameras: corner"):
        SimBuildConfig(cameras=["corner", "nadir"])
    with pytest.raises(SimBuildError, match="valid presets"):
        SimBuildConfig(preset="huge")
    with pytest.raises(SimBuildError, match="other settings"):
        build(tiny(built.out, seed=5), progress=False)


def test_no_defects_in_any_split(built):
    for split, files in built.files.items():
        if files:
            assert load_bench(files).defects == [], split


def test_build_workers_exit_without_gl_tracebacks(built, tmp_path):
    """Each worker keeps its envs' GL contexts across units; it must close them before its interpreter exits,
    or every context prints an `EGLError` traceback on stderr (40 of them in `make demo`)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "copy"
    shutil.copytree(built.out, out)
    (out / "DONE").unlink()
    for split in ("bench", "sft"):
        for unit in (out / "units" / split).glob("*.json"):
            unit.unlink()
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from helpers import tiny_sim_config\n"
        "from progresslm.sim.sim_build import build\n"
        "import dataclasses\n"
        "outcome = build(dataclasses.replace(tiny_sim_config(%r), workers=2), progress=False)\n"
        "assert outcome.built == 2, outcome.built\n"
    ) % (str(Path(__file__).parents[1]), str(out))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Exception ignored" not in done.stderr and "EGLError" not in done.stderr, done.stderr[-3000:]


def test_mixed_presets_split_every_family_on_its_own(monkeypatch):
    """`worlds-small` / `worlds` (issue 26): every registered family gets bench, sft and rl tasks of its own, a family
    of a few tasks keeps training tasks, and the episodes per family and split follow the preset's plan."""
    from progresslm.sim.family import FAMILIES, all_tasks
    from progresslm.sim.sim_build import PRESETS, check_families, plan_units, split_tasks

    config = SimBuildConfig(preset="worlds")
    assert config.families == tuple(FAMILIES) and len(FAMILIES) >= 3
    splits = split_tasks(config)
    known = all_tasks(config.families)
    for family in FAMILIES:
        mine = {split: [t for t in tasks if known[t].family == family] for split, tasks in splits.items()}
        assert len(mine["bench"]) >= 2 and mine["rl"] and mine["sft"], (family, mine)
        assert not set(mine["bench"]) & set(mine["sft"]) | set(mine["rl"]) & set(mine["sft"])
    units = plan_units(config, splits)
    for family in FAMILIES:
        bench = [u for u in units if u.split == "bench" and known[u.task].family == family]
        assert len(bench) >= PRESETS["worlds"].episodes["bench"]  # per family, shared among its bench tasks
    # a family that cannot run here stops the build before anything is written, naming the family
    import progresslm.sim.family as family_module

    broken = family_module.get_family("fetch")
    monkeypatch.setattr(type(broken), "problem", lambda self: "gymnasium_robotics is missing: pip install '.[fetch]'")
    with pytest.raises(SimBuildError, match="fetch cannot run here"):
        check_families(SimBuildConfig(preset="worlds-small"))


def test_naming_the_default_family_is_the_default_build():
    """`sim build --family metaworld` and `sim build` (or eval's default benchmark) are one build: one folder, one
    identity, so neither refuses the other's folder as "a build with other settings (family)"."""
    for preset in ("small", "full"):
        named, default = SimBuildConfig(preset=preset, family="metaworld"), SimBuildConfig(preset=preset)
        assert named.identity() == default.identity() and named.default_out() == default.default_out()
    assert SimBuildConfig(preset="small", family="fetch").identity() != SimBuildConfig(preset="small").identity()


def test_every_preset_resumes_its_own_folder(tmp_path):
    """A build's identity is what build.json holds (JSON: tuples become lists), for every preset and family, so a
    second run of the same command reuses the folder instead of calling it a build with other settings."""
    from progresslm.builder import core
    from progresslm.sim.family import FAMILIES
    from progresslm.sim.sim_build import PRESETS

    configs = [SimBuildConfig(preset=p) for p in PRESETS] + [SimBuildConfig(preset="small", family=f) for f in FAMILIES]
    for number, config in enumerate(configs):
        identity = config.identity()
        assert identity == json.loads(json.dumps(identity)), config.preset
        out = tmp_path / str(number)
        assert not core.open_build(out, identity, SimBuildError)  # new folder: nothing to reuse
        assert not core.open_build(out, config.identity(), SimBuildError)  # the same settings again: no refusal
