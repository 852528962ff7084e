"""Issue 25, items 1 and 5: keys that keep every episode apart, and a resume that checks what it trusts."""

from __future__ import annotations

import json
import shutil
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from progresslm.data.data_build import DataBuildConfig, DataBuildError, build
from progresslm.io import slug
from tests.data.own_data import TASKS, write_videos

SAFE = set(string.ascii_letters + string.digits + "._-")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"), cameras=("top",))


def test_task_folders_named_in_other_scripts_keep_their_episodes_apart(videos, tmp_path):
    """Before: "任务一/ep0" and "任务二/ep0" both became the key "ep0": one task's samples overwrote the other's."""
    source = tmp_path / "src"
    for task, name in zip(TASKS, ("打开抽屉", "拿起杯子")):
        shutil.copytree(videos / task, source / name)
    plain = build(DataBuildConfig(source=str(videos), out=str(tmp_path / "plain"), size=32), progress=False)
    named = build(DataBuildConfig(source=str(source), out=str(tmp_path / "named"), size=32), progress=False)
    assert named.samples == plain.samples  # nothing lost: the same counts as with ASCII names
    def units(name):
        return [p.name for p in (tmp_path / name / "units").rglob("*.json") if not p.name.endswith(".files.json")]

    assert len(units("named")) == len(set(units("named"))) == len(units("plain")) == 6
    ids = {json.loads(line)["id"] for f in named.files["bench"] for line in f.read_text().splitlines()}
    assert len(ids) == sum(1 for _ in (tmp_path / "named" / "units").rglob("*.files.json"))


def test_two_episodes_with_one_key_stop_the_build_naming_both(videos, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(videos / TASKS[0], source / "a b")  # "a b/ep0" and "a_b/ep0" give the key a_b_ep0
    shutil.copytree(videos / TASKS[1], source / "a_b")
    with pytest.raises(DataBuildError, match=r"episodes '(a b|a_b)/ep(\d)' and '(a_b|a b)/ep\2' give the same key"):
        build(DataBuildConfig(source=str(source), out=str(tmp_path / "out"), size=32), progress=False)


def test_resume_rebuilds_a_truncated_unit_and_one_whose_image_was_deleted(videos, tmp_path):
    """Before: a unit JSON cut short by a crash, or one whose images were deleted since, counted as built."""
    config = DataBuildConfig(source=str(videos), out=str(tmp_path / "r"), size=32)
    first = build(config, progress=False)
    before = {p.name: p.read_text() for p in first.files["bench"]}
    units = sorted(p for p in (tmp_path / "r" / "units" / "bench").iterdir() if not p.name.endswith(".files.json"))
    units[0].write_text(units[0].read_text()[:40])  # truncated
    record = json.loads(units[1].read_text())
    row = next(r for rows in record.values() for r in rows)
    image = tmp_path / "r" / "images" / row["id"] / row["stage_to_estimate"][0]
    image.unlink()  # deleted since
    (tmp_path / "r" / "DONE").unlink()
    again = build(config, progress=False)
    assert again.built == 2 and image.is_file()
    assert {p.name: p.read_text() for p in again.files["bench"]} == before


def test_resume_rebuilds_a_unit_whose_image_changed_size(videos, tmp_path):
    config = DataBuildConfig(source=str(videos), out=str(tmp_path / "r"), size=32)
    build(config, progress=False)
    unit = sorted(p for p in (tmp_path / "r" / "units" / "bench").iterdir() if not p.name.endswith(".files.json"))[0]
    row = next(r for rows in json.loads(unit.read_text()).values() for r in rows)
    image = tmp_path / "r" / "images" / row["id"] / row["stage_to_estimate"][0]
    image.write_bytes(image.read_bytes()[:100])  # a JPEG cut short
    (tmp_path / "r" / "DONE").unlink()
    assert build(config, progress=False).built == 1


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=120), st.text(min_size=1, max_size=120))
def test_slugs_are_safe_and_keep_names_apart_unless_both_are_plain_ascii(a, b):
    sa, sb = slug(a), slug(b)
    assert sa and set(sa) <= SAFE and len(sa) <= 60
    if a != b and sa == sb:  # only ASCII names that differ in the characters both spell as "_" may meet
        assert a.isascii() and b.isascii() and len(a) <= 60 and len(b) <= 60


def test_long_names_with_one_beginning_get_different_keys():
    base = "pick up the red block and place it carefully inside the blue bowl on the left "
    assert slug(base + "first try") != slug(base + "second try")
    assert slug("open_drawer") == "open_drawer"  # a plain name keeps the spelling earlier builds used
