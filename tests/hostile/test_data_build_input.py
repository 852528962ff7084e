"""Issue 25: `progresslm data build` under inputs a user makes. The card's command can be pasted back (its quoting
kept); `--splits nan|inf` and huge `--episodes` ranges are one-line errors; a scene camera is the observation by
default, not a wrist camera; a task folder whose name is not valid UTF-8 builds to the end (no UnicodeEncodeError
after the split files were written without their DONE marker)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from data.own_data import write_hdf5, write_videos

from progresslm.cli.main import main


def build(source, out, *extra) -> list[str]:
    return ["data", "build", str(source), "--out", str(out), "--keyframes", "uniform:2", "--per-interval", "1",
            "--size", "32", "--quiet", *extra]  # fmt: skip


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_videos(tmp_path_factory.mktemp("own") / "videos", cameras=("hand_wrist", "scene"))


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(out.glob("*/*.jsonl")) for line in path.read_text().splitlines()]


def test_the_cards_command_can_be_pasted_back(videos, tmp_path, capsys):
    out = tmp_path / "run dir"
    argv = build(f"videos:{videos}", out, "--task", "lift the cube", "--splits", "bench:1")
    assert main(argv) == 0
    command = json.loads((out / "card.json").read_text())["command"]
    assert command.startswith("progresslm data build ")
    assert shlex.split(command)[1:] == argv, command  # the old card read `--task lift the cube`
    assert f"`{command}`" in (out / "card.md").read_text()


def test_the_command_line_is_quoted_for_every_command():
    from progresslm.cli.main import command_line

    assert command_line(["sim", "build", "--out", "my runs/a"]) == "progresslm sim build --out 'my runs/a'"
    assert shlex.split(command_line(["data", "build", "x", "--task", "it's $HOME"]))[-1] == "it's $HOME"


@pytest.mark.parametrize("splits", ["bench:nan", "bench:inf", "bench:1,sft:inf", "bench:-inf", "bench:1,sft:nan"])
def test_splits_that_are_not_finite_shares_name_the_option(videos, tmp_path, capsys, splits):
    err = one_line_error(capsys, build(f"videos:{videos}", tmp_path / "out", "--splits", splits))
    assert f"--splits {splits!r}" in err, err


@pytest.mark.parametrize("ranges", ["0-20000000", "3-1", "0-2,9"])
def test_episode_ranges_beyond_the_source_are_one_line_errors(videos, tmp_path, capsys, ranges):
    err = one_line_error(capsys, build(f"videos:{videos}", tmp_path / "out", "--episodes", ranges))
    assert f"--episodes {ranges!r}" in err, err


def test_a_scene_camera_is_the_observation_by_default(videos, tmp_path):
    """By name the wrist camera sorts first; every observation must come from the scene camera, and the wrist camera
    serves as the other view of cross-view samples."""
    out = tmp_path / "out"
    assert main(build(f"videos:{videos}", out, "--split-by", "episode")) == 0
    made = rows(out)
    assert {r["episode"]["obs_camera"] for r in made if "episode" in r} == {"scene"}
    cross = [r for r in made if r.get("camera_combination")]
    assert cross and {r["episode"]["demo_camera"] for r in cross if "episode" in r} == {"hand_wrist"}


def test_robomimic_agentview_is_the_observation_by_default(tmp_path):
    path = write_hdf5(tmp_path / "image.hdf5")
    out = tmp_path / "out"
    assert main(build(f"hdf5:{path}", out, "--task", "lift", "--split-by", "episode")) == 0
    assert {r["episode"]["obs_camera"] for r in rows(out) if "episode" in r} == {"agentview"}


def test_cameras_asked_for_are_still_drawn_among(videos, tmp_path):
    out = tmp_path / "out"
    assert main(build(f"videos:{videos}", out, "--cameras", "hand_wrist")) == 0
    assert {r["episode"]["obs_camera"] for r in rows(out) if "episode" in r} == {"hand_wrist"}


def test_a_task_folder_name_that_is_not_utf8_builds_to_the_end(tmp_path, capsys):
    source = write_videos(tmp_path / "videos", cameras=("top",), annotate=False)
    raw = os.path.join(os.fsencode(source), b"caf\xe9_cup")  # Latin-1 bytes: not UTF-8
    os.rename(source / "pick_cup", raw)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main([a for a in build(f"videos:{source}", out) if a != "--quiet"])  # its warnings shown
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "DONE").exists() and (out / "card.md").exists()
    for path in out.rglob("*.json*"):
        path.read_bytes().decode("utf-8")  # every file we wrote is UTF-8 text
        for line in path.read_text(encoding="utf-8").splitlines() if path.suffix == ".jsonl" else ():
            assert "\\ud" not in line  # no lone surrogate escapes in the rows
    tasks = {r["task_goal"] for r in rows(out)}
    assert "caf\\xe9 cup" in tasks, tasks  # the byte shown, the task kept apart from others
    assert "not valid UTF-8" in err and "task.txt" in err, err
