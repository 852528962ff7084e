"""`progresslm watch` end to end on drawn frames: a frame folder and a small mp4, with pixel-nn and constant."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from progresslm.cli.main import main
from progresslm.images import natural_key

# Grey levels of the frames: a ramp to the middle keyframe, a long plateau, then up to the end.
LEVELS = [0, 30] + [128] * 10 + [200, 255, 255, 255, 255]
PNG = b"\x89PNG\r\n\x1a\n"


def grey(level: int) -> np.ndarray:
    return np.full((32, 48, 3), level, np.uint8)


@pytest.fixture
def demo_dir(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    for i, level in enumerate([0, 128, 255]):
        Image.fromarray(grey(level)).save(folder / f"key{i}.png")
    return folder


@pytest.fixture
def frame_dir(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, level in enumerate(LEVELS):  # unpadded names: f10 must come after f9, not after f1
        Image.fromarray(grey(level)).save(folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    return folder


def read_events(out) -> dict:
    return json.loads((out / "events.json").read_text())


def test_natural_key_orders_numbers_by_value():
    names = ["f10.png", "f9.png", "f1.png", "f0.png"]
    assert sorted(names, key=natural_key) == ["f0.png", "f1.png", "f9.png", "f10.png"]


def test_frame_folder_with_pixel_nn(tmp_path, frame_dir, demo_dir, capsys):
    out = tmp_path / "out"
    code = main(["watch", str(frame_dir), "--demo-dir", str(demo_dir), "--goal", "brighten the square",
                 "--backend", "pixel-nn", "--fps", "2", "--stall-seconds", "1.5", "--batch-size", "4",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    assert (out / "curve.png").read_bytes()[:8] == PNG
    assert not (out / "overlay.mp4").exists()
    data = read_events(out)
    steps = data["steps"]
    assert data["complete"] is True
    assert [s["source"] for s in steps] == [f"f{i}.png" for i in range(len(LEVELS))]
    assert [s["t"] for s in steps] == [i / 2 for i in range(len(LEVELS))]  # --fps 2: half a second apart
    # pixel-nn answers the nearest keyframe's progress: 0, 0, 50 (x7), 100 (200 is nearer 255), 100 ...
    assert [s["raw"] for s in steps] == [0.0, 0.0] + [50.0] * 10 + [100.0] * 5
    assert all(s["low"] <= s["smoothed"] <= s["high"] for s in steps)
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("done") == 1 and kinds.count("stall") == 1
    stall = next(e for e in data["events"] if e["kind"] == "stall")
    assert 2.5 <= stall["t"] <= 5.5  # during the plateau (t = 1.0 .. 5.5), once the estimate has settled
    assert data["events"] == sorted(data["events"], key=lambda e: e["index"])
    assert data["settings"]["demo"] == [str(demo_dir / f"key{i}.png") for i in range(3)]
    assert data["settings"]["monitor"]["stall_seconds"] == 1.5 and data["settings"]["backend"] == "pixel-nn"
    assert data["summary"]["frames"] == len(LEVELS) and data["summary"]["done"] is True
    assert "done" in capsys.readouterr().out


def test_every_keeps_every_nth_frame_and_its_timestamp(tmp_path, frame_dir, demo_dir):
    out = tmp_path / "out"
    code = main(["watch", str(frame_dir), "--demo", str(demo_dir / "key0.png"), str(demo_dir / "key2.png"),
                 "--goal", "g", "--backend", "pixel-nn", "--every", "3", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    steps = read_events(out)["steps"]
    assert [s["source"] for s in steps] == ["f0.png", "f3.png", "f6.png", "f9.png", "f12.png", "f15.png"]
    assert [s["t"] for s in steps] == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]  # default 1 frame/s


def test_text_demo_with_the_constant_backend(tmp_path, frame_dir):
    out = tmp_path / "out"
    code = main(["watch", str(frame_dir), "--demo-text", "reach", "grasp", "lift", "--goal", "lift the cup",
                 "--backend", "constant", "--value", "100", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    data = read_events(out)
    assert data["settings"]["demo_kind"] == "text" and data["settings"]["options"]["value"] == 100.0
    assert {s["raw"] for s in data["steps"]} == {100.0}
    assert [e["index"] for e in data["events"] if e["kind"] == "done"] == [1]


@pytest.fixture
def video(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    path = tmp_path / "clip.mp4"
    frames = [grey(level) for level in LEVELS for _ in range(5)]  # 5 frames per level at 10 fps
    iio.imwrite(path, frames, fps=10)
    return path


def test_video_with_overlay(tmp_path, video, demo_dir):
    iio = pytest.importorskip("imageio.v3")
    out = tmp_path / "out"
    code = main(["watch", str(video), "--demo-dir", str(demo_dir), "--goal", "brighten", "--backend", "pixel-nn",
                 "--fps", "2", "--video", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    data = read_events(out)
    steps = data["steps"]
    # 10 fps sampled at 2 fps: frames 0, 5, 10, ... at 0.0, 0.5, 1.0 ... s, one per drawn level
    assert [s["source"] for s in steps] == [f"frame {5 * i}" for i in range(len(LEVELS))]
    assert [s["t"] for s in steps] == [i / 2 for i in range(len(LEVELS))]
    assert data["settings"]["native_fps"] == 10.0 and data["settings"]["source_kind"] == "video"
    assert [s["raw"] for s in steps][-1] == 100.0 and data["summary"]["done"] is True
    overlay = list(iio.imiter(out / "overlay.mp4"))
    assert len(overlay) == len(steps)
    height, width, _ = overlay[0].shape
    assert width == 480 and height % 16 == 0
    # the top is the frame (dark at first, bright at the end), the bottom the white curve panel
    assert overlay[0][: height // 2].mean() < 40 and overlay[-1][: height // 2].mean() > 215
    assert overlay[-1][-60:].mean() > 150
    assert (out / "curve.png").read_bytes()[:8] == PNG


def test_unreadable_video(tmp_path, demo_dir, capsys):
    pytest.importorskip("imageio_ffmpeg")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    assert main(["watch", str(bad), "--demo-dir", str(demo_dir), "--goal", "g", "--backend", "pixel-nn",
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith(f"error: source: cannot read {bad} as a video")


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p: [str(p / "nowhere"), "--demo-dir", str(p / "demo"), "--goal", "g"],
         "source: .*nowhere does not exist"),
        (lambda p: [str(p / "empty"), "--demo-dir", str(p / "demo"), "--goal", "g"],
         "source: .*empty holds no image files"),
        (lambda p: [str(p / "frames"), "--goal", "g"], "no demonstration: give --demo KEYFRAME"),
        (lambda p: [str(p / "frames"), "--demo", str(p / "demo" / "key0.png"), str(p / "missing.png"), "--goal", "g"],
         "--demo: keyframe .*missing.png does not exist"),
        (lambda p: [str(p / "frames"), "--demo", str(p / "demo" / "key0.png"), "--goal", "g"],
         "--demo: a visual demonstration needs at least 2 keyframes"),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "empty"), "--goal", "g"], "--demo-dir: .*holds no image"),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "demo")], "--goal: give the task goal"),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "demo"), "--goal", "g", "--backend", "gpt9"],
         "unknown backend 'gpt9'; valid backends: "),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "demo"), "--goal", "g", "--every", "0"],
         "--every: expected a whole number >= 1, got 0"),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "demo"), "--goal", "g", "--min-gain", "150"],
         "--min-gain: expected a percentage > 0 and < 100, got 150"),
        (lambda p: [str(p / "frames"), "--demo-dir", str(p / "demo"), "--goal", "g", "--num-samples", "3"],
         "samples=3 asks the backend 3 times per frame, but its temperature is 0.0"),
        (lambda p: [str(p / "broken"), "--demo-dir", str(p / "demo"), "--goal", "g", "--on-bad-frame", "fail"],
         "broken.*f1.png: not a readable image"),
    ],
)
def test_errors_exit_2_with_a_message(tmp_path, demo_dir, frame_dir, capsys, make_args, message):
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(grey(0)).save(broken / "f0.png")
    (broken / "f1.png").write_bytes(b"not a png")
    args = make_args(tmp_path)
    if "--backend" not in args:
        args += ["--backend", "pixel-nn"]
    assert main(["watch", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def test_a_backend_failure_exits_1(tmp_path, frame_dir, demo_dir, capsys):
    replies = tmp_path / "replies.jsonl"
    replies.write_text("")
    code = main(["watch", str(frame_dir), "--demo-dir", str(demo_dir), "--goal", "g", "--backend", "replay",
                 "--replies", str(replies), "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err.startswith("error: ")
