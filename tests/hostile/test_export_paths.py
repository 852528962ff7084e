"""Issue 25, item 2: `bench export` packs only files under --image-root. A row whose image path is absolute, climbs
out with '..' or goes through a symlink out of the root stops the export with one line naming the row and the path;
the file is never read into the dataset (and so never uploaded with --push)."""

from __future__ import annotations

import json

import pytest
from helpers import fixture, write_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.bench.format import load_bench
from progresslm.cli.main import main

pytest.importorskip("datasets")
ROW = json.loads(fixture("visual_same_view").read_text().splitlines()[0])
SECRET = b"password=hunter2\n"


@pytest.fixture
def bench(tmp_path):
    """A benchmark folder with one good row, its images under bench/images, and a secret file outside the root."""
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "visual_same_view.jsonl").write_text(json.dumps(ROW) + "\n")
    write_images(load_bench([folder / "visual_same_view.jsonl"]).samples, folder / "images")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return folder


def export(folder, out, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["bench", "export", str(folder), "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err.strip()


def packed_secret(out) -> bool:
    return out.exists() and any(SECRET in p.read_bytes() for p in out.rglob("*") if p.is_file())


def bad_row(folder, how: str) -> dict:
    secret = folder.parent / "secret.txt"
    depth = len(ROW["id"].split("/")) + 2  # images/<id>/ and then out of bench/
    if how == "absolute":
        return dict(ROW, stage_to_estimate=[str(secret)])
    if how == "dotdot":
        return dict(ROW, stage_to_estimate=["../" * depth + "secret.txt"])
    if how == "dotdot_id":
        return dict(ROW, id="../..", stage_to_estimate=["secret.txt"])
    if how == "demo":
        return dict(ROW, visual_demo=[str(secret), *ROW["visual_demo"][1:]])
    link = folder / "images" / ROW["id"] / "link.jpg"
    link.symlink_to(secret)
    return dict(ROW, stage_to_estimate=["link.jpg"])


@pytest.mark.parametrize("how", ["absolute", "dotdot", "dotdot_id", "demo", "symlink"])
def test_an_image_outside_the_root_stops_the_export_naming_row_and_path(bench, tmp_path, capsys, how):
    row = bad_row(bench, how)
    (bench / "visual_same_view.jsonl").write_text(json.dumps(ROW) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "out"
    code, err = export(bench, out, capsys)
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    name = {"demo": row["visual_demo"][0], "dotdot_id": "'../../"}.get(how, row["stage_to_estimate"][0])
    assert "visual_same_view.jsonl:2" in err and name in err and "leads outside" in err, err
    assert not packed_secret(out) and not out.exists()


def test_images_inside_the_root_still_export(bench, tmp_path, capsys):
    code, err = export(bench, tmp_path / "out", capsys)
    assert code == 0, err


names = st.lists(st.sampled_from(["..", "a", "b", ".", "secret.txt"]), min_size=1, max_size=6).map("/".join)


@given(names)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_name_either_stays_in_the_root_or_is_refused(bench, tmp_path, capsys, name):
    """Generated relative names: the export succeeds only when the name resolves inside the root, and the secret
    outside it is never packed."""
    from progresslm.data.hf_datasets import HFDataError, export_hf

    (bench / "visual_same_view.jsonl").write_text(json.dumps(dict(ROW, stage_to_estimate=[name])) + "\n")
    root = (bench / "images").resolve()
    target = (root / ROW["id"] / name).resolve()
    out = tmp_path / "out"
    try:
        export_hf(bench, out, progress=False, overwrite=True, allow_missing=True)
    except HFDataError as err:
        assert "leads outside" in str(err) or "cannot be read" in str(err), err
        assert not target.is_relative_to(root) or "cannot be read" in str(err)
    else:
        assert target.is_relative_to(root)
    assert not packed_secret(out)
