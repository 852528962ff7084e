"""Issue 25: garbage sidecars beside a video or frame folder, fps that is not a frame rate (a sidecar, --fps), and
files that are not UTF-8 are one-line errors naming the file and key, exit 2 (never a traceback)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.cli.main import main
from progresslm.data.episode_sources import open_episodes
from progresslm.data.episodes import EpisodeSourceError
from tests.data.own_data import write_frames, write_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"), cameras=("top",), annotate=False)


def cli_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@given(fps=st.one_of(st.sampled_from([float("nan"), float("inf"), 0, -5, True, "10", [10]]),
                     st.floats(max_value=0) | st.floats(min_value=1e5)))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_sidecar_fps_that_is_not_a_frame_rate_is_refused_naming_it(videos, fps):
    sidecar = videos / "pick_cup" / "ep0.json"
    sidecar.write_text(json.dumps({"fps": fps}))
    try:
        with pytest.raises(EpisodeSourceError, match=r"ep0.json: fps is"):
            open_episodes(f"videos:{videos}")
    finally:
        sidecar.unlink()


@pytest.mark.parametrize("content", [b"\xff\xfe garbage", b'{"task": 5}', b'{"task": ["a"]}'])
def test_garbage_sidecars_are_one_line_naming_the_file(videos, capsys, content):
    sidecar = videos / "pick_cup" / "ep1.json"
    sidecar.write_bytes(content)
    try:
        assert f"{sidecar}:" in cli_error(capsys, ["data", "episodes", f"videos:{videos}"])
    finally:
        sidecar.unlink()


@pytest.mark.parametrize("name, content", [("task.txt", b"\xffpick"), ("ep2.steps.csv", b"end,text\n\xff1.0,x\n")])
def test_text_files_that_are_not_utf8_are_one_line_naming_the_file(videos, capsys, name, content):
    path = videos / "pick_cup" / name
    path.write_bytes(content)
    try:
        assert f"{path}: not" in cli_error(capsys, ["data", "episodes", f"videos:{videos}"])
    finally:
        path.unlink()


@pytest.mark.parametrize("fps", ["nan", "inf", "0", "-3"])
def test_fps_option_that_is_not_a_frame_rate_is_refused(tmp_path, capsys, fps):
    root = write_frames(tmp_path / "frames")
    assert "--fps is" in cli_error(capsys, ["data", "episodes", f"frames:{root}", "--fps", fps])
