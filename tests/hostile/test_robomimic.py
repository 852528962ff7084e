"""Issue 25, item 8: robomimic HDF5 files as robomimic users name and make them. Files written with h5py in robomimic's
documented layout (docs/datasets/overview.md; what dataset_states_to_obs.py writes): data/demo_N/obs/<camera>_image,
data/demo_N/actions, data.attrs["env_args"] JSON with env_kwargs.control_freq, mask/<filter key>."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.cli.main import main
from progresslm.data.episode_sources import open_episodes
from progresslm.data.episodes import EpisodeSourceError

h5py = pytest.importorskip("h5py")


def frame(i: int, camera: int) -> np.ndarray:
    pixels = np.full((16, 16, 3), 30 + 60 * camera, np.uint8)
    pixels[:, i % 16, 0] = 255  # the frame index as a column
    return pixels


def write(path: Path, cameras=("agentview", "robot0_eye_in_hand"), lengths=(12, 10, 14), control_freq=10,
          env_name="Lift", masks=None, obs=True, frames_of=None, env_args=None) -> Path:  # fmt: skip
    """A robomimic image dataset: `frames_of[(demo, camera)]` overrides how many frames a camera holds."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        kwargs = {"has_renderer": False, "camera_names": list(cameras), "camera_heights": 16, "camera_widths": 16}
        if control_freq is not None:
            kwargs["control_freq"] = control_freq
        data.attrs["env_args"] = env_args if env_args is not None else json.dumps(
            {"env_name": env_name, "type": 1, "env_kwargs": kwargs})
        data.attrs["total"] = sum(lengths)
        for d, n in enumerate(lengths):
            demo = data.create_group(f"demo_{d}")
            demo.attrs["num_samples"] = n
            demo["actions"] = np.zeros((n, 7), np.float32)
            demo["states"] = np.zeros((n, 32), np.float64)
            if obs:
                group = demo.create_group("obs")
                for c, camera in enumerate(cameras):
                    count = (frames_of or {}).get((d, camera), n)
                    group[f"{camera}_image"] = np.stack([frame(i, c) for i in range(count)])
                group["robot0_eef_pos"] = np.zeros((n, 3), np.float32)
        for key, demos in (masks or {}).items():
            f.create_dataset(f"mask/{key}", data=np.array([name.encode() for name in demos], dtype="S"))
    return path


def cli_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_the_frame_rate_is_read_from_env_args_control_freq(tmp_path):
    episodes = open_episodes(f"hdf5:{write(tmp_path / 'image.hdf5', control_freq=10)}")
    assert {e.fps for e in episodes} == {10.0}  # robomimic's 20 was assumed
    assert episodes[0].duration == pytest.approx(1.1)
    assert open_episodes(str(tmp_path / "image.hdf5"), fps=15)[0].fps == 15.0  # --fps wins


@pytest.mark.parametrize("rate", [float("nan"), 0, -20, "fast"])
def test_a_control_freq_that_is_not_a_rate_is_refused_naming_it(tmp_path, rate):
    path = write(tmp_path / "image.hdf5", control_freq=rate)
    with pytest.raises(EpisodeSourceError, match=r"env_args'\] env_kwargs.control_freq is"):
        open_episodes(str(path))


def test_garbage_env_args_is_an_error_naming_it(tmp_path, capsys):
    path = write(tmp_path / "image.hdf5", env_args="{not json")
    assert f"{path}: data: attrs['env_args'] is not JSON" in cli_error(capsys, ["data", "episodes", f"hdf5:{path}"])


def test_no_task_text_says_the_env_name_is_the_goal_and_points_to_task(tmp_path, caplog):
    path = write(tmp_path / "image.hdf5")
    with caplog.at_level(logging.WARNING, logger="progresslm.data.hdf5"):
        episodes = open_episodes(str(path))
    assert episodes[0].task == "Lift"
    assert any("no task text" in r.message and "'Lift'" in r.message and "--task" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="progresslm.data.hdf5"):
        assert open_episodes(str(path), task="lift the cube")[0].task == "lift the cube"
    assert not caplog.records


def test_cameras_answer_to_robomimic_names_with_or_without_image(tmp_path):
    episode = open_episodes(str(write(tmp_path / "image.hdf5")))[0]
    assert episode.cameras == ("agentview", "robot0_eye_in_hand")
    for name in ("agentview", "agentview_image"):
        assert name in episode.cameras
        assert [int(np.argmax(f[0, :, 0])) for f in episode.read(name, [3, 7])] == [3, 7]
    with pytest.raises(EpisodeSourceError, match="no camera 'frontview'"):
        episode.read("frontview", [0])


def test_the_third_person_camera_comes_before_the_wrist_camera(tmp_path):
    # by name the wrist camera sorts first ("robot0_..." < "sideview"), and was every default's pick
    episode = open_episodes(str(write(tmp_path / "image.hdf5", cameras=("sideview", "robot0_eye_in_hand"))))[0]
    assert episode.cameras == ("sideview", "robot0_eye_in_hand")
    episode = open_episodes(str(write(tmp_path / "b.hdf5", cameras=("left_wrist", "birdview", "frontview"))))[0]
    assert episode.cameras == ("birdview", "frontview", "left_wrist")


def test_filter_key_reads_the_demos_of_its_mask(tmp_path, capsys):
    path = write(tmp_path / "image.hdf5", masks={"train": ["demo_0", "demo_2"], "valid": ["demo_1"]})
    assert [e.id for e in open_episodes(f"hdf5:{path}#train")] == ["demo_0", "demo_2"]
    capsys.readouterr()
    assert main(["data", "episodes", str(path), "--filter-key", "valid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 episodes") and "demo_1" in out and "demo_0" not in out
    err = cli_error(capsys, ["data", "episodes", str(path), "--filter-key", "test"])
    assert "no filter key 'test' (mask/test); the file has train, valid" in err


def test_a_states_only_file_names_the_conversion_that_makes_images(tmp_path, capsys):
    path = write(tmp_path / "demo.hdf5", obs=False)
    err = cli_error(capsys, ["data", "episodes", f"hdf5:{path}"])
    assert "data/demo_0 has no 'obs' group" in err and "dataset_states_to_obs" in err


def test_a_camera_shorter_than_the_actions_is_named(tmp_path, capsys):
    path = write(tmp_path / "image.hdf5", frames_of={(1, "robot0_eye_in_hand"): 7})
    err = cli_error(capsys, ["data", "episodes", f"hdf5:{path}"])
    assert "data/demo_1/obs/robot0_eye_in_hand_image holds 7 frames but the demo has 10" in err


camera_names = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=12)


@given(st.lists(camera_names, min_size=1, max_size=4, unique=True))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_camera_names_read_by_name_and_by_observation_key(tmp_path, names):
    path = write(tmp_path / "names.hdf5", cameras=tuple(names), lengths=(3,))
    episode = open_episodes(str(path))[0]
    assert len(episode.cameras) == len(names)
    on_hand = [any(mark in c for mark in ("eye_in_hand", "wrist", "gripper")) for c in episode.cameras]
    assert on_hand == sorted(on_hand)  # no scene camera after a wrist camera
    for k, camera in enumerate(names):
        for asked in (camera, f"{camera}_image"):
            if asked in episode.cameras:
                pixels = episode.read(asked, [2])[0]
                assert int(pixels[0, 0, 1]) == 30 + 60 * k  # the camera asked for, not another


def test_a_file_without_control_freq_is_read_at_20_fps_with_a_warning(tmp_path, caplog):
    """robomimic files made without `control_freq` in env_args: robosuite's default rate, said once, with the option
    that sets another."""
    import logging

    with caplog.at_level(logging.WARNING):
        episodes = open_episodes(f"hdf5:{write(tmp_path / 'image.hdf5', control_freq=None)}")
    assert {e.fps for e in episodes} == {20.0}
    said = [r.getMessage() for r in caplog.records if "control_freq" in r.getMessage()]
    assert said and "--fps" in said[0] and "image.hdf5" in said[0]
