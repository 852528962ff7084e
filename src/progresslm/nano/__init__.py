"""ProgressLM-nano: the project's small VLM, trained here on simulator data and shipped inside the package.

A FastVLM-architecture VLM (transformers' `FastVlmForConditionalGeneration`): the frozen ImageNet EfficientNet-Lite0
as its vision tower, a 2-layer projector, a small Qwen2 LM and a tokenizer of our own, trained by the project's own
`progresslm train sft` / `grpo`, reading the matcher's similarities as text hints (`--hints matcher`) beside the
images.

One package, in LeRobot's manner: `configuration_nano.py` (tower, tokens, the tokenizer and chat template),
`modeling_nano.py` (building the model), `backend_nano.py` (`--backend nano`), `demo_cache.py` (demonstration
features and the prompt prefix's KV cache), `weights/` (the
shipped checkpoint and its card). Nothing heavy is imported until a model is built or loaded.
"""

from __future__ import annotations

from pathlib import Path

from progresslm.checkpoints import shipped

VLM_DIR = Path(__file__).resolve().parent / "weights"


def vlm_dir() -> Path:
    """The shipped checkpoint; a clear error when this install lacks it."""
    return shipped(VLM_DIR, "ProgressLM-nano")
