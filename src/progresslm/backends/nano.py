"""`nano`: ProgressLM-nano, the project's own 3.7 M-parameter Qwen2.5-VL, shipped inside the package.

It is the `hf` backend with the model directory `progresslm/models/nano` (weights in safetensors,
processor, model card `README.md`), so `progresslm eval` runs a trained model on a CPU with nothing
downloaded. `--model DIR` points it at another nano-style checkpoint (for example a new `make nano`
run). Its replies are short two-stage answers, so generation stops at `NANO_MAX_NEW_TOKENS` unless
`--max-new-tokens` says otherwise. Its model name carries a digest of the weights
(`progresslm-nano@1a2b3c4d`), so replies saved by an earlier release are never reused for a newer one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

from progresslm.backends.base import BackendError, BackendOptions
from progresslm.backends.hf import HFBackend

NANO_DIR = Path(__file__).resolve().parents[1] / "models" / "nano"
NANO_MAX_NEW_TOKENS = 64  # its replies are ~30 tokens; a confused one stops here instead of at 512
DEFAULT_MAX_NEW_TOKENS = BackendOptions().max_new_tokens


def nano_dir() -> Path:
    """The shipped checkpoint; a clear error when this install lacks it."""
    if not (NANO_DIR / "model.safetensors").is_file():
        raise BackendError(
            f"ProgressLM-nano is not in this install ({NANO_DIR} has no model.safetensors); reinstall progresslm, "
            "or train it with `make nano` and pass --model DIR"
        )
    return NANO_DIR


@functools.cache
def weights_id(model_dir: Path) -> str:
    """The first 8 hex digits of the sha256 of `model_dir/model.safetensors` (~30 ms for nano's 15 MB)."""
    digest = hashlib.sha256()
    with open(Path(model_dir) / "model.safetensors", "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


class NanoBackend(HFBackend):
    """The `hf` backend preset to the shipped ProgressLM-nano checkpoint."""

    def __init__(self, options: BackendOptions, mode: str):
        changes = {}
        if not options.model:
            changes["model"] = str(nano_dir())
        if options.max_new_tokens == DEFAULT_MAX_NEW_TOKENS:
            changes["max_new_tokens"] = NANO_MAX_NEW_TOKENS
        super().__init__(dataclasses.replace(options, **changes), mode)

    @property
    def model_name(self) -> str:
        model = Path(self.options.model)
        return f"progresslm-nano@{weights_id(NANO_DIR)}" if model.resolve() == NANO_DIR else str(model)
