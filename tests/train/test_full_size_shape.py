"""The Qwen2.5-VL-3B-shaped model of benchmarks/ (full_size_dry_run.py, gpu_smoke.sh), at its reduced size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import qwen2_5_vl_3b_shape as shape  # noqa: E402


@pytest.fixture(scope="module")
def reduced_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qwen3b-reduced")
    shape.build(out, reduced=True)
    return out


def test_reduced_model_keeps_the_kinds_of_the_3b(reduced_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(reduced_dir)
    vision, text = config.vision_config, config.text_config
    # Windowed vision attention with full attention in some blocks, SwiGLU MLP, 2 x 2 merger, as in the 3B.
    assert vision.window_size == 112 and vision.fullatt_block_indexes == [1, 3] and vision.spatial_merge_size == 2
    assert text.hidden_size // text.num_attention_heads == 128 == 2 * sum(text.rope_parameters["mrope_section"])
    assert text.num_attention_heads // text.num_key_value_heads == 2 and config.tie_word_embeddings


def test_the_3b_sizes_give_the_checkpoints_parameter_count():
    """3,754,622,976 parameters in Qwen/Qwen2.5-VL-3B-Instruct; ours differ by the vocabulary alone."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(text_config={**shape.TEXT_3B, "vocab_size": 151936}, vision_config=shape.VISION_3B,
                              tie_word_embeddings=True)  # fmt: skip
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976


def test_processor_and_template_are_the_checkpoints(reduced_dir):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(reduced_dir)
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 12845056)
    assert list(processor.image_processor.image_mean) == shape.PROCESSOR_3B["image_mean"]
    assert processor.chat_template == shape.qwen2_5_vl_chat_template()
    # A 224 x 224 frame (the recipes' max_pixels) is 16 x 16 patches, 64 tokens after the 2 x 2 merge.
    grid = processor.image_processor(images=[Image.new("RGB", (224, 224))], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, 16, 16]]


@pytest.mark.slow
def test_gpu_smoke_check_mode_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_smoke.sh --check: argument parsing, the reduced model, the recipes' dry runs and eval --backend hf."""
    env = {**os.environ, "OUT": str(tmp_path / "smoke"), "PY": sys.executable, "PROGRESSLM_HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", "benchmarks/gpu_smoke.sh", "--check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "eval hf: 2 samples" in done.stdout and "samples/s" in done.stdout
    bad = subprocess.run(["bash", "benchmarks/gpu_smoke.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --cpu" in bad.stderr
