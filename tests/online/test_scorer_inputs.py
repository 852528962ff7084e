"""What ProgressScorer.score takes: one image or many; paths, PIL images, arrays and tensors, channels last or first."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from progresslm.online.scorer import ProgressScorer, ScorerError, as_pil


def test_layouts_and_types_become_the_same_picture(tmp_path):
    hwc = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    Image.fromarray(hwc).save(path)
    expected = np.asarray(as_pil(hwc, "x"))
    for form in (np.moveaxis(hwc, -1, 0), hwc / 255.0, str(path), path, Image.fromarray(hwc)):
        assert np.array_equal(np.asarray(as_pil(form, "x")), expected) or np.abs(
            np.asarray(as_pil(form, "x")).astype(int) - expected).max() <= 1  # float rounding
    grey = np.asarray(as_pil(hwc[..., 0], "x"))
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 1], hwc[..., 0])
    torch = pytest.importorskip("torch")
    assert np.array_equal(np.asarray(as_pil(torch.from_numpy(np.moveaxis(hwc, -1, 0).copy()), "x")), expected)
    with pytest.raises(ScorerError, match=r"H x W x C or C x H x W .* got shape \(5, 20, 30\)"):
        as_pil(np.zeros((5, 20, 30), np.uint8), "x")


def test_score_takes_one_image_or_a_batch(tmp_path):
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 128, 255)]
    path = tmp_path / "mid.png"
    Image.fromarray(frames[1]).save(path)
    with ProgressScorer("g", frames, backend="pixel-nn") as scorer:
        assert len(scorer.score(str(path))) == 1  # a path is one image, not its characters
        assert len(scorer.score(frames[1])) == 1 and len(scorer.score(np.stack(frames))) == 3
        assert len(scorer.score(np.stack([np.moveaxis(f, -1, 0) for f in frames]))) == 3  # N x C x H x W
        assert [round(e.progress, 2) for e in scorer.score(frames)] == [0.0, 0.5, 1.0]
