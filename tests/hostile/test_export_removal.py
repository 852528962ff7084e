"""Issue 25, item 6: `data export-lerobot` never deletes what it did not create. It writes into a folder of its own
and renames it into place; a user's `<out>.partial` is not its own; `--overwrite` removes only the files its manifest
lists, and never through a symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.data.episode_sources import open_episodes
from progresslm.data.lerobot_export import MANIFEST, LeRobotExportError, export_lerobot
from tests.data.test_lerobot_export import synthetic


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def mine(folder: Path) -> dict[str, bytes]:
    """A user's folder of their own files."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub").mkdir()
    (folder / "sub" / "result.csv").write_text("1,2,3")
    return tree(folder)


def test_a_users_partial_folder_beside_out_is_left_alone(tmp_path):
    partial = tmp_path / "ds.partial"
    before = mine(partial)
    export_lerobot([synthetic(0)], tmp_path / "ds")
    assert tree(partial) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds.partial"]  # and nothing of ours is left


def test_a_partial_symlink_beside_out_and_its_target_are_left_alone(tmp_path):
    target = tmp_path / "precious"
    before = mine(target)
    (tmp_path / "ds.partial").symlink_to(target, target_is_directory=True)
    export_lerobot([synthetic(0)], tmp_path / "ds")
    assert (tmp_path / "ds.partial").is_symlink() and tree(target) == before


def test_overwrite_replaces_the_export_and_keeps_the_users_files_in_out(tmp_path):
    root = export_lerobot([synthetic(0), synthetic(1)], tmp_path / "ds")
    listed = json.loads((root / MANIFEST).read_text())["files"]
    assert "meta/info.json" in listed and MANIFEST in listed
    (root / "README.md").write_text("my card")
    (root / "meta" / "my_split.json").write_text("{}")
    export_lerobot([synthetic(3, 5)], root, overwrite=True)
    assert (root / "README.md").read_text() == "my card" and (root / "meta" / "my_split.json").read_text() == "{}"
    assert [e.length for e in open_episodes(f"lerobot:{root}")] == [5]
    now = json.loads((root / MANIFEST).read_text())["files"]
    assert sorted(tree(root)) == sorted([*now, "README.md", "meta/my_split.json"])  # the old export's files are gone


def test_overwrite_refuses_a_dataset_without_a_manifest_and_removes_nothing(tmp_path):
    root = export_lerobot([synthetic(0)], tmp_path / "ds")
    (root / MANIFEST).unlink()  # as a dataset LeRobot itself (or anyone else) wrote
    before = tree(root)
    with pytest.raises(LeRobotExportError, match="no readable meta/progresslm_export.json"):
        export_lerobot([synthetic(1)], root, overwrite=True)
    assert tree(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_overwrite_does_not_remove_through_a_symlink(tmp_path):
    root = export_lerobot([synthetic(0)], tmp_path / "ds")
    outside = tmp_path / "elsewhere" / "videos"
    os.renames(root / "videos", outside)  # the user moved the videos and linked them back
    (root / "videos").symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    with pytest.raises(LeRobotExportError, match=r"ds/videos is a symlink: export-lerobot neither writes nor removes"):
        export_lerobot([synthetic(1)], root, overwrite=True)
    assert tree(outside) == before and (root / "videos").is_symlink()
    assert [e.id for e in open_episodes(f"lerobot:{root}")] == ["episode_000000"]  # the earlier export, whole


entries = st.one_of(
    st.sampled_from(["../victim/keep.txt", "../victim", "/tmp", "..", ".", "", "meta/../../victim/keep.txt"]),
    st.lists(st.sampled_from(["..", "victim", "keep.txt", "a", "."]), min_size=1, max_size=4).map("/".join),
    st.text(max_size=10),
)


@given(st.lists(entries, min_size=1, max_size=6))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_tampered_manifest_never_removes_a_file_outside_out(tmp_path, listed):
    base = tmp_path / "case"
    if base.exists():
        import shutil

        shutil.rmtree(base)
    victim = base / "victim"
    before = mine(victim)
    root = export_lerobot([synthetic(0)], base / "ds")
    manifest = root / MANIFEST
    files = json.loads(manifest.read_text())["files"]
    manifest.write_text(json.dumps({"files": [*files, *listed]}))
    try:
        export_lerobot([synthetic(1)], root, overwrite=True)
    except LeRobotExportError:
        pass
    assert tree(victim) == before
