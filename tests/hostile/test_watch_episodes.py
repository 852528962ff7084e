"""Issue 25, items 3 and 8: `progresslm watch --source` over episodes of a robomimic file as a robomimic user runs it.
The demonstration episode, when it is also watched, is marked as such and left out of the mean; the camera watched
is recorded; summary.json names every episode's source; sampling reaches the last frame; ranges and numbers that
make no sense are one-line errors naming the option the user gave."""

from __future__ import annotations

import json

import pytest

from progresslm.cli.main import main

pytest.importorskip("h5py")

from tests.hostile.test_robomimic import write  # noqa: E402  (needs h5py)

LENGTHS = (70, 30, 41)  # frames at 20 frames/s: 3.45 s, 1.45 s, 2.0 s


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("robomimic") / "image.hdf5", lengths=LENGTHS, control_freq=20)
    return f"hdf5:{path}"


def watch(source, out, *extra) -> int:
    return main(["watch", "--source", source, "--demo-episode", "0", "--backend", "pixel-nn", "--out", str(out),
                 "--quiet", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def watched(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("watch") / "run"
    assert watch(source, out) == 0
    return out


def test_the_demonstration_episode_is_marked_and_left_out_of_the_mean(watched):
    summary = json.loads((watched / "summary.json").read_text())
    assert [r["demonstration"] for r in summary["episodes"]] == [True, False, False]
    assert json.loads((watched / "demo_0" / "events.json").read_text())["settings"]["demonstration"] is True
    assert json.loads((watched / "demo_1" / "events.json").read_text())["settings"]["demonstration"] is False
    table = (watched / "summary.md").read_text()
    assert "demo_0 (demonstration)" in table
    assert "Mean VOC over 2 episodes" in table and "demonstration left out" in table


def test_the_camera_watched_is_recorded(watched, source, tmp_path):
    summary = json.loads((watched / "summary.json").read_text())
    assert [r["camera"] for r in summary["episodes"]] == ["agentview"] * 3
    assert summary["settings"]["demo_camera"] == "agentview"
    events = json.loads((watched / "demo_2" / "events.json").read_text())
    assert events["settings"]["camera"] == "agentview"
    assert watch(source, tmp_path / "wrist", "--camera", "robot0_eye_in_hand_image", "--episodes", "1") == 0
    events = json.loads((tmp_path / "wrist" / "demo_1" / "events.json").read_text())
    assert events["settings"]["camera"] == "robot0_eye_in_hand"  # the camera's name, not the alias given


def test_summary_json_names_every_episodes_source(watched, source):
    summary = json.loads((watched / "summary.json").read_text())
    assert [r["source"] for r in summary["episodes"]] == ["hdf5:demo_0", "hdf5:demo_1", "hdf5:demo_2"]
    assert summary["settings"]["episodes_source"] == source
    assert "source" not in summary["settings"]  # no longer the last episode's, as if it were all of them


def test_sampling_reaches_the_last_frame(watched, source, tmp_path):
    for k, length in enumerate(LENGTHS):
        steps = json.loads((watched / f"demo_{k}" / "events.json").read_text())["steps"]
        assert steps[-1]["source"] == f"frame {length - 1}", (k, [s["source"] for s in steps])
        indices = [int(s["source"].split()[1]) for s in steps]
        assert indices == sorted(set(indices))
    assert watch(source, tmp_path / "every", "--episodes", "0", "--every", "3") == 0
    steps = json.loads((tmp_path / "every" / "demo_0" / "events.json").read_text())["steps"]
    assert [s["source"] for s in steps] == ["frame 0", "frame 30", "frame 60", "frame 69"]


def one_line_error(capsys, source, tmp_path, *extra) -> str:
    capsys.readouterr()
    assert watch(source, tmp_path / "bad", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("extra", "option"), [
    (["--episodes", "3-1"], "--episodes"),
    (["--episodes", "1-x"], "--episodes"),
    (["--episodes", "0-2000"], "--episodes"),
    (["--demo-episode", "9"], "--demo-episode"),
    (["--start", "nan"], "--start"),
    (["--start", "inf"], "--start"),
    (["--end", "nan"], "--end"),
    (["--end", "-1"], "--end"),
    (["--start", "2", "--end", "1"], "--start"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-p", "inf"], "--top-p"),
    (["--done-threshold", "inf"], "--done-threshold"),
    (["--regression-drop", "nan"], "--regression-drop"),
])  # fmt: skip
def test_arguments_that_make_no_sense_name_the_option(capsys, source, tmp_path, extra, option):
    err = one_line_error(capsys, source, tmp_path, *extra)
    assert option in err, err
    if option == "--demo-episode":
        assert "--episodes" not in err, err


HUGE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))  # the old code listed every index: 20M ints
from progresslm.data.episode_sources import select
from progresslm.data.episodes import Episode, EpisodeSourceError
episodes = [Episode("x", str(i), i, "t", ("c",), 10.0, 5, reader=None) for i in range(3)]
try:
    select(episodes, sys.argv[1])
except EpisodeSourceError as err:
    print(err)
"""


@pytest.mark.parametrize("ranges", ["0-20000000", "5-99999999999999", "0-2,7-20000000"])
def test_a_huge_range_is_refused_without_allocating(ranges):
    """In a process capped at 2 GiB of address space, so that the old code's list of every index fails fast
    (MemoryError) instead of taking the machine's memory."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HUGE, ranges], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "MemoryError" not in done.stderr, done.stderr[-500:]
    assert done.stdout.startswith("--episodes") and "3 episodes" in done.stdout and "0-2" in done.stdout, done.stdout
