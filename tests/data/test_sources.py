"""Episode sources from folders and HDF5: layout, tasks, cameras, annotations, frame content, errors."""

from __future__ import annotations

import json

import pytest

from progresslm.data.episode_sources import open_episodes, select
from progresslm.data.episodes import EpisodeSourceError
from progresslm.data.video import VideoError, decode
from tests.data.own_data import FPS, LENGTHS, bar_position, write_frames, write_hdf5, write_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"))


def test_videos_folder_reads_tasks_cameras_steps_and_frames(videos):
    episodes = open_episodes(f"videos:{videos}")
    assert [e.task for e in episodes] == ["open drawer"] * 3 + ["pick cup"] * 3  # natural folder order
    assert episodes[4].id == "pick_cup/ep1" and episodes[4].cameras == ("top", "wrist")
    assert [e.length for e in episodes[:3]] == list(LENGTHS) and episodes[0].fps == FPS
    assert [s.text for s in episodes[0].keysteps] == ["reach", "grasp", "lift"]
    frames = episodes[4].read("wrist", [25, 3, 17])  # any order, one decode pass
    assert [bar_position(f, 0) for f in frames] == [25, 3, 17]
    assert open_episodes(str(videos))[0].source == "videos"  # recognised without the kind


def test_frames_folder_and_a_bare_path(tmp_path):
    root = write_frames(tmp_path / "frames")
    episodes = open_episodes(str(root), fps=5)
    assert len(episodes) == 4 and episodes[0].cameras == ("left", "right") and episodes[0].fps == 5
    assert [bar_position(f, 1) for f in episodes[1].read("right", [0, 35])] == [0, 35]  # open_drawer: channel 1


def test_hdf5_robomimic_layout(tmp_path):
    path = write_hdf5(tmp_path / "lift.hdf5")
    episodes = open_episodes(f"hdf5:{path}")
    assert [e.id for e in episodes] == ["demo_0", "demo_1", "demo_2"] and episodes[0].task == "Lift"
    assert episodes[0].cameras == ("agentview", "robot0_eye_in_hand")  # robomimic's names; not the 3-vector state
    assert episodes[0].keysteps is not None and episodes[1].keysteps is None
    frames = episodes[2].read("agentview_image", [39, 5, 5])
    assert [bar_position(f, 0) for f in frames] == [39, 5, 5]
    assert open_episodes(str(path), task="lift the cube")[0].task == "lift the cube"


def test_decode_window_and_nearest_times(videos):
    path = videos / "pick_cup" / "ep0.top.mp4"
    window = list(decode(path, start=1.0, end=2.0))
    assert [round(t, 1) for t, _ in window] == [1.0 + i / 10 for i in range(10)]
    assert [bar_position(f, 0) for _, f in decode(path, times=[0.0, 0.52, 2.9])] == [0, 5, 29]


def test_select_episode_ranges(videos):
    episodes = open_episodes(f"videos:{videos}")
    assert [e.index for e in select(episodes, "1-2,5")] == [1, 2, 5]
    with pytest.raises(EpisodeSourceError, match="no episode 9"):
        select(episodes, "9")
    with pytest.raises(EpisodeSourceError, match="0-9,12"):
        select(episodes, "a-b")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "a single file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no videos"),
    ],
)
def test_unreadable_sources_name_what_and_where(tmp_path, make, message):
    with pytest.raises(EpisodeSourceError, match=message):
        open_episodes(str(make(tmp_path)))


def test_bad_sidecars_and_videos_are_named(tmp_path, videos):
    folder = tmp_path / "task_a"
    folder.mkdir()
    (folder / "ep0.mp4").write_bytes((videos / "pick_cup" / "ep0.top.mp4").read_bytes())
    (folder / "ep0.json").write_text(json.dumps({"steps": [{"end": 2.0}, {"end": 1.0}]}))
    with pytest.raises(EpisodeSourceError, match=r"ep0.json: step 2 ends at 1.0; ends must rise"):
        open_episodes(f"videos:{tmp_path}")
    (folder / "ep0.json").write_text("{not json")
    with pytest.raises(EpisodeSourceError, match="ep0.json: not valid JSON"):
        open_episodes(f"videos:{tmp_path}")
    (folder / "ep0.json").unlink()
    (folder / "ep1.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError, match="ep1.mp4: not a readable video"):
        open_episodes(f"videos:{tmp_path}")
    with pytest.raises(EpisodeSourceError, match="no camera 'side'"):
        open_episodes(f"videos:{videos}")[0].read("side", [0])
    with pytest.raises(EpisodeSourceError, match="frame 30 outside 0..29"):
        open_episodes(f"videos:{videos}")[0].read("top", [30])


def test_hdf5_errors(tmp_path):
    import h5py

    with h5py.File(tmp_path / "bad.hdf5", "w") as handle:
        handle.create_group("other")
    with pytest.raises(EpisodeSourceError, match="no group 'data'"):
        open_episodes(f"hdf5:{tmp_path / 'bad.hdf5'}")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(EpisodeSourceError, match="junk.h5: not a readable HDF5 file"):
        open_episodes(str(tmp_path / "junk.h5"))
