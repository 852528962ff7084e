"""Issue 25, item 9 (the readers' one policy for tiny frames): a 1 x 1 or 2 x 2 frame shows nothing to score, and
every Episode reader (LeRobot, a videos folder, a frames folder, robomimic HDF5) treats it the same: an
EpisodeSourceError naming the episode, camera and frame, and `data build` stops with that one line. Frames of
images.MIN_SIDE pixels read everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data import lerobot_fixture

from progresslm.cli.main import main
from progresslm.data.episode_sources import open_episodes
from progresslm.data.episodes import EpisodeSourceError
from progresslm.images import MIN_SIDE


def pixels(side: int, i: int = 0) -> np.ndarray:
    return np.full((side, side, 3), 10 * i + 20, np.uint8)


def lerobot(root: Path, side: int, monkeypatch) -> str:
    monkeypatch.setattr(lerobot_fixture, "WIDTH", side)
    monkeypatch.setattr(lerobot_fixture, "HEIGHT", side)
    lerobot_fixture.write_lerobot(root, codec="png")
    return f"lerobot:{root}"


def videos(root: Path, side: int, monkeypatch) -> str:
    from progresslm.data.video import write_video

    for e in range(2):
        write_video(root / "pick_cup" / f"ep{e}.mp4", [pixels(side, i) for i in range(6)], 10.0)
    return f"videos:{root}"


def frames(root: Path, side: int, monkeypatch) -> str:
    from PIL import Image

    for e in range(2):
        folder = root / "pick_cup" / f"ep{e}"
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(pixels(side, i)).save(folder / f"f{i}.png")
    return f"frames:{root}"


def hdf5(root: Path, side: int, monkeypatch) -> str:
    h5py = pytest.importorskip("h5py")
    root.mkdir()
    with h5py.File(root / "image.hdf5", "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 10}})
        for e in range(2):
            demo = data.create_group(f"demo_{e}")
            demo["actions"] = np.zeros((6, 7), np.float32)
            demo.create_group("obs")["agentview_image"] = np.stack([pixels(side, i) for i in range(6)])
    return f"hdf5:{root / 'image.hdf5'}"


READERS = {"lerobot": lerobot, "videos": videos, "frames": frames, "hdf5": hdf5}


def sides(reader: str) -> list[int]:
    return [2] if reader == "videos" else [1, 2]  # H.264 has no 1 x 1 frames: a 1 x 1 video cannot be written


@pytest.mark.parametrize(("reader", "side"), [(r, s) for r in READERS for s in sides(r)])
def test_a_tiny_frame_is_refused_by_every_reader_alike(tmp_path, monkeypatch, reader, side):
    spec = READERS[reader](tmp_path / "src", side, monkeypatch)
    episode = open_episodes(spec, task="pick the cup")[0]
    with pytest.raises(EpisodeSourceError) as err:
        episode.read(episode.cameras[0], [0, 1])
    message = str(err.value)
    assert f"the frame is {side} x {side} pixels, too small to score" in message, message
    assert f"episode {episode.id}" in message and "frame 0" in message and episode.cameras[0] in message, message


@pytest.mark.parametrize("reader", list(READERS))
def test_data_build_stops_with_that_one_line(tmp_path, monkeypatch, capsys, reader):
    spec = READERS[reader](tmp_path / "src", 2, monkeypatch)
    capsys.readouterr()
    code = main(["data", "build", spec, "--out", str(tmp_path / "out"), "--task", "pick the cup", "--quiet",
                 "--keyframes", "uniform:2"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert "2 x 2 pixels, too small to score" in err, err


@pytest.mark.parametrize("reader", list(READERS))
def test_frames_of_the_smallest_side_read_everywhere(tmp_path, monkeypatch, reader):
    side = MIN_SIDE if reader != "lerobot" else 16  # the LeRobot fixture marks its frames in a 16-row band
    spec = READERS[reader](tmp_path / "src", side, monkeypatch)
    episode = open_episodes(spec, task="pick the cup")[0]
    assert [f.shape[:2] for f in episode.read(episode.cameras[0], [0, 1])] == [(side, side)] * 2
