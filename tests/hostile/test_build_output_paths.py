"""Issue 25, items 1 and 2 for what `data build` and `watch` write: episode names are the user's (HDF5 group names,
file stems, folder names) and may be ".", "..", "demo" or worse. Every file lands under --out, in the episode's own
folder: a name never climbs out, and never names a folder that holds another episode's files (an episode named "."
wrote its demonstration frames into the images of the episode named "demo")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from progresslm.cli.main import main
from progresslm.data.data_build import DataBuildConfig, build
from progresslm.io import slug

h5py = pytest.importorskip("h5py")

from tests.hostile.test_robomimic import frame  # noqa: E402  (needs h5py)

# HDF5 keeps these group names as they are ("." is the group itself, so that one cannot be made; a video file
# "..mp4" names the episode "." and goes through the same slug)
NAMES = ("..", "...", ".hidden", "demo", "demo_other", "hdf5", "images", "units")


def write(path: Path, names=NAMES, length: int = 12) -> Path:
    """A robomimic image file whose demos are named `names`, each its own frames (the demo's position in the
    green channel), one camera."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 10}})
        for d, name in enumerate(names):
            demo = data.create_group(name)
            demo["actions"] = np.zeros((length, 7), np.float32)
            pixels = np.stack([frame(i, 0) for i in range(length)])
            pixels[..., 1] = 10 * d
            demo.create_group("obs")["agentview_image"] = pixels
    return path


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("paths")
    source = write(base / "in" / "odd.hdf5")
    outside = files_under(base)
    out = base / "sub" / "out"
    config = DataBuildConfig(source=f"hdf5:{source}", out=str(out), keyframes="uniform:2", per_interval=1, size=16,
                             task="lift the cube", split_by="episode")  # fmt: skip
    outcome = build(config, progress=False)
    return base, out, outside, outcome


def test_no_file_is_written_outside_out(built):
    base, out, outside, _ = built
    assert {p for p in files_under(base) if not p.is_relative_to(out)} == outside


def test_every_episode_writes_its_own_folder_and_no_other_episode_writes_there(built):
    _, out, _, outcome = built
    rows = [json.loads(line) for files in outcome.files.values() for f in files for line in f.read_text().splitlines()]
    trajectories = {row["id"] for row in rows}
    assert len(trajectories) == len(NAMES)  # each episode observed once, each in its own folder
    for trajectory in trajectories:
        assert not {".", ".."} & set(Path(trajectory).parts), trajectory
    folders = {(out / "images" / t).resolve() for t in trajectories}
    for a in folders:  # none inside another: an episode's files are its folder's alone
        assert not any(b != a and b.is_relative_to(a) for b in folders), a
    listed = [name for unit in (out / "units").rglob("*.files.json") for name in json.loads(unit.read_text())]
    assert len(listed) == len(set(listed))  # no image written by two units


def test_watch_gives_each_such_episode_its_own_folder(tmp_path):
    source = write(tmp_path / "odd.hdf5")
    out = tmp_path / "sub" / "watch"
    outside = files_under(tmp_path)
    assert main(["watch", "--source", f"hdf5:{source}", "--demo-episode", "3", "--backend", "pixel-nn", "--out",
                 str(out), "--every", "4", "--quiet"]) == 0  # fmt: skip
    assert {p for p in files_under(tmp_path) if not p.is_relative_to(out)} == outside
    summary = json.loads((out / "summary.json").read_text())
    assert [row["episode"] for row in summary["episodes"]] == list(NAMES)
    events = sorted(out.glob("*/events.json"))
    assert len(events) == len(NAMES)
    assert {json.loads(p.read_text())["settings"]["source"] for p in events} == {f"hdf5:{name}" for name in NAMES}


@pytest.mark.parametrize("name", [".", "..", "...", ".hidden", "-", "a..b"])
def test_dot_names_are_never_a_folders_self_or_parent(name):
    key = slug(name)
    assert key not in (".", "..") and "/" not in key and key


def test_watch_keeps_episodes_named_in_other_scripts_or_alike_for_60_characters_apart(tmp_path):
    """Issue 25 item 1 for `watch`: names that differ only in non-ASCII characters, or only after 60 characters, each
    get their own folder and events (they once shared one, a later episode overwriting an earlier one)."""
    long = "x" * 70
    names = ("抽屉", "柜子", "引き出し", long + "a", long + "b", "demo")
    source = write(tmp_path / "names.hdf5", names=names)
    out = tmp_path / "watch"
    assert main(["watch", "--source", f"hdf5:{source}", "--demo-episode", "5", "--backend", "pixel-nn", "--out",
                 str(out), "--every", "4", "--quiet"]) == 0  # fmt: skip
    events = sorted(out.glob("*/events.json"))
    assert len(events) == len(names)
    assert {json.loads(p.read_text())["settings"]["source"] for p in events} == {f"hdf5:{name}" for name in names}
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(row["episode"] for row in summary["episodes"]) == sorted(names)  # in the file's order
