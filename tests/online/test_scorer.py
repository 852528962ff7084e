"""ProgressScorer: in-memory images and files against a demonstration, through any backend."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from progresslm.online import ProgressScorer, ScorerError
from progresslm.types import Modality, Status


def grey(level: int, size: int = 48) -> np.ndarray:
    return np.full((size, size, 3), level, np.uint8)


def test_visual_demo_from_arrays_files_and_pil(tmp_path):
    path = tmp_path / "k1.png"
    Image.fromarray(grey(80)).save(path)
    demo = [grey(0), str(path), Image.fromarray(grey(160)), grey(240)]
    with ProgressScorer("open the drawer", demo, backend="pixel-nn") as scorer:
        assert scorer.demo.modality is Modality.VISUAL and scorer.demo.total_steps == 3
        estimates = scorer.score([grey(82), grey(238), np.zeros((48, 48, 3), np.float32) + 0.63])
    # pixel-nn answers the progress of the nearest keyframe: 1/3, 1, and 160/255 ~ keyframe 3
    assert [e.anchor for e in estimates] == [2, 4, 3]
    assert [round(e.progress * 3) for e in estimates] == [1, 3, 2]
    assert all(e.status is Status.VALUE and e.latency_s >= 0 for e in estimates)
    assert estimates[0].to_dict()["progress"] == pytest.approx(33.0, abs=0.5)


def test_text_demo_and_an_empty_batch():
    with ProgressScorer("open the drawer", ["reach the handle", "pull it open"], backend="constant") as scorer:
        assert scorer.demo.modality is Modality.TEXT and scorer.demo.total_steps == 2
        assert scorer.score([]) == []
        (estimate,) = scorer.score([grey(10)])
    assert estimate.progress == 0.5 and estimate.anchor == 1


def test_frames_stay_in_memory_and_are_released():
    from progresslm import images

    with ProgressScorer("g", [grey(0), grey(255)], backend="pixel-nn") as scorer:
        for level in range(0, 250, 10):
            scorer.score([grey(level)])
        assert len(scorer._held) == 2  # the two keyframes only
        demo = [Path(p) for p in scorer.demo.items]
        assert all(images.held(p) is not None for p in demo)
        assert not scorer._folder.exists()  # nothing was written
    assert all(images.held(p) is None for p in demo)


@pytest.mark.parametrize(
    "goal, demo, pattern",
    [
        ("", ["a"], "goal: give the task goal"),
        ("g", [], "demo: give a list"),
        ("g", "reach", "demo: give a list"),
        ("g", [grey(0)], "at least 2 keyframes"),
        ("g", ["reach", grey(0)], "mixes step descriptions and images"),
        ("g", [grey(0), np.zeros((5, 6, 7))], r"demo\[1\]: expected an image array of H x W x C"),
        ("g", ["step", "  "], "a text step is empty"),
    ],
)
def test_bad_input_says_what_and_where(goal, demo, pattern):
    with pytest.raises(ScorerError, match=pattern):
        ProgressScorer(goal, demo, backend="constant")


def test_a_bad_observation_is_named(tmp_path):
    with ProgressScorer("g", [grey(0), grey(255)], backend="constant") as scorer:
        with pytest.raises(ScorerError, match=r"observation\[1\]: image file .*missing.png does not exist"):
            scorer.score([grey(0), tmp_path / "missing.png"])
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not an image")
        with pytest.raises(ScorerError, match=r"observation\[0\]: .*bad.png is not a readable image"):
            scorer.score([bad])
