"""A benchmark file must not make eval read files outside --image-root and send them to a model server."""

from __future__ import annotations

import json

import pytest
from helpers import fixture, write_images

from progresslm.bench.format import load_bench
from progresslm.cli.main import main
from progresslm.images import ImageReadError, ImageStore

ROW = json.loads(fixture("visual_same_view").read_text().splitlines()[0])


@pytest.fixture
def bench(tmp_path):
    """One good row with its images under ROOT, and a secret text file outside ROOT."""
    root = tmp_path / "root"
    path = tmp_path / "bench" / "visual_same_view.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(ROW) + "\n")
    write_images(load_bench([path]).samples, root)
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    return path, root, secret


def run(path, root, tmp_path, *extra) -> int:
    return main(["eval", "--bench", str(path), "--image-root", str(root), "--backend", "pixel-nn",
                 "--out", str(tmp_path / "run"), "--quiet", "--no-plots", *extra])  # fmt: skip


@pytest.mark.parametrize("how", ["absolute", "dotdot_name", "dotdot_id", "symlink"])
def test_paths_leading_out_of_the_root_are_refused_before_any_call(bench, tmp_path, capsys, how):
    path, root, secret = bench
    row = dict(ROW)
    if how == "absolute":
        row["stage_to_estimate"] = [str(secret)]
    elif how == "dotdot_name":
        row["stage_to_estimate"] = ["../" * (len(ROW["id"].split("/")) + 1) + "secret.txt"]
    elif how == "dotdot_id":
        row["id"] = "../.."
        row["stage_to_estimate"] = ["secret.txt"]
    else:
        link = root / ROW["id"] / "link.jpg"
        link.symlink_to(secret)
        row["stage_to_estimate"] = ["link.jpg"]
    path.write_text(json.dumps(row) + "\n")
    assert run(path, root, tmp_path) == 2
    err = capsys.readouterr().err
    assert "lead outside --image-root" in err and "--allow-outside-image-root" in err
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_the_flag_lets_a_user_opt_in(bench, tmp_path):
    path, root, _ = bench
    other = tmp_path / "elsewhere"
    write_images(load_bench([path]).samples, other)
    row = dict(ROW, stage_to_estimate=[str(other / ROW["id"] / ROW["stage_to_estimate"][0])])
    path.write_text(json.dumps(row) + "\n")
    assert run(path, root, tmp_path) == 2
    assert run(path, root, tmp_path, "--allow-outside-image-root") == 0


def test_bytes_that_are_not_an_image_are_never_encoded(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    truncated = tmp_path / "cut.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-30])
    store = ImageStore()
    for path in (text, truncated):
        with pytest.raises(ImageReadError, match=f"{path.name}: cannot read image"):
            store.get(path, "data_url")


def test_dot_dot_after_a_symlinked_folder_is_followed(tmp_path):
    """root/link/../x.png where link points outside: the file lies outside, though the text looks inside."""
    from progresslm.evaluation import EvalError, check_image_root
    from progresslm.prompts import Prompt

    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    root.mkdir()
    (outside / "x.png").write_bytes(b"secret")
    (root / "x.png").write_bytes(b"fine")
    (root / "link").symlink_to(outside / "dir")

    class S:
        uid = "a"

    prompts = {"a": Prompt(messages=[], images=[root / "link" / ".." / "x.png"], hash="h")}
    with pytest.raises(EvalError, match="lead outside"):
        check_image_root([S()], prompts, str(root), allow=False)
    check_image_root([S()], {"a": Prompt(messages=[], images=[root / "x.png"], hash="h")}, str(root), allow=False)
