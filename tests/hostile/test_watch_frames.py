"""`progresslm watch` over a folder with broken frames: each is named; the run goes on (or stops cleanly)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from progresslm.cli.main import main
from progresslm.online.frame_sources import ffmpeg_reason


@pytest.fixture
def folders(tmp_path):
    demo, frames = tmp_path / "demo", tmp_path / "frames"
    demo.mkdir()
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 100 * i, np.uint8)).save(demo / f"k{i}.png")
    for i in range(6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(frames / f"f{i}.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(frames / "f2.png")  # a degenerate frame
    (frames / "f4.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # an unreadable one
    return demo, frames


def watch(demo, frames, out, *extra) -> int:
    return main(["watch", str(frames), "--demo-dir", str(demo), "--goal", "open the drawer", "--backend", "pixel-nn",
                 "--out", str(out), "--batch-size", "2", *extra])  # fmt: skip


def test_bad_frames_are_skipped_and_named(folders, tmp_path, capsys):
    demo, frames = folders
    assert watch(demo, frames, tmp_path / "run") == 0
    err = capsys.readouterr().err
    assert "f2.png: the frame is 1 x 1 pixels" in err and "f4.png: not a readable image" in err
    events = json.loads((tmp_path / "run" / "events.json").read_text())
    assert [step["source"] for step in events["steps"]] == ["f0.png", "f1.png", "f3.png", "f5.png"]
    assert len(events["skipped"]) == 2 and events["complete"]


def test_or_the_run_stops_at_the_first_naming_it_and_keeps_what_it_scored(folders, tmp_path, capsys):
    demo, frames = folders
    assert watch(demo, frames, tmp_path / "run", "--on-bad-frame", "fail", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "f2.png: the frame is 1 x 1 pixels, too small to score" in err
    events = json.loads((tmp_path / "run" / "events.json").read_text())
    assert [step["source"] for step in events["steps"]] == ["f0.png", "f1.png"] and not events["complete"]


def test_the_ffmpeg_banner_is_trimmed_from_video_errors():
    banner = ("ffmpeg version 6.1 Copyright (c) 2000-2023 the FFmpeg developers\n  built with gcc 12\n"
              "  configuration: --enable-gpl --enable-libx264\n  libavutil 58. 29.100\nbroken.mp4: moov atom not found")
    assert ffmpeg_reason(banner) == "broken.mp4: moov atom not found"
