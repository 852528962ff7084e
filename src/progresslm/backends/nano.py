"""`nano`: ProgressLM-nano v1, the project's FastVLM-architecture VLM, shipped inside the package.

It is the `hf` backend with the model folder `progresslm/nano/weights/nano` (weights in safetensors,
processor, model card), so `progresslm eval` runs a trained VLM on a CPU with nothing downloaded.
Nano was trained with the matcher's retrieval hints in its prompts, so they are on by default
(`--hints none` asks without them: the ablation). `--model DIR` points it at another nano-style
checkpoint (a new `make nano` run). Its replies are short two-stage answers, so generation stops at
`NANO_MAX_NEW_TOKENS` unless `--max-new-tokens` says otherwise. The model name carries a digest of the
weights (`progresslm-nano@1a2b3c4d`), so replies saved by one release are never reused for another.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from progresslm.backends.base import BackendError, BackendOptions
from progresslm.backends.hf import HFBackend

NANO_MAX_NEW_TOKENS = 64  # its replies are ~25 tokens; a confused one stops here instead of at 512
DEFAULT_MAX_NEW_TOKENS = BackendOptions().max_new_tokens


class NanoBackend(HFBackend):
    """The `hf` backend preset to the shipped ProgressLM-nano checkpoint, with matcher hints."""

    default_hints: ClassVar[str | None] = "matcher"

    def __init__(self, options: BackendOptions, mode: str):
        from progresslm.nano.checkpoints import CheckpointError, vlm_dir

        changes = {}
        if not options.model:
            try:
                changes["model"] = str(vlm_dir())
            except CheckpointError as err:
                raise BackendError(str(err)) from None
        if options.max_new_tokens == DEFAULT_MAX_NEW_TOKENS:
            changes["max_new_tokens"] = NANO_MAX_NEW_TOKENS
        super().__init__(dataclasses.replace(options, **changes), mode)

    @property
    def model_name(self) -> str:
        from progresslm.nano import VLM_DIR
        from progresslm.nano.checkpoints import weights_id

        model = Path(self.options.model)
        if model.resolve() == VLM_DIR.resolve():
            return f"progresslm-nano@{weights_id(VLM_DIR)}"
        return str(model)
