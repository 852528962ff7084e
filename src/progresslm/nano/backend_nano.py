"""`nano`: ProgressLM-nano v1, the project's FastVLM-architecture VLM, shipped inside the package.

It is the `hf` backend with the model folder `progresslm/nano/weights` (weights in safetensors,
processor, model card), so `progresslm eval` runs a trained VLM on a CPU with nothing downloaded.
Nano was trained with the matcher's retrieval hints in its prompts, so they are on by default
(`--hints none` asks without them: the ablation). `--model DIR` points it at another nano-style
checkpoint (a new `make nano` run). Its replies are short two-stage answers, so generation stops at
`NANO_MAX_NEW_TOKENS` unless `--max-new-tokens` says otherwise. The model name carries a digest of the
weights (`progresslm-nano@1a2b3c4d`), so replies saved by one release are never reused for another.

A demonstration is computed once (`progresslm.nano.demo_cache`): its keyframes' features, and for a request
asked alone the KV cache of the prompt before the observation, are kept across requests, so frame after frame
of one demonstration (`watch`, a `serve` session, a benchmark's trajectory) pays for the observation only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from progresslm.backends.base import BackendError, BackendOptions
from progresslm.backends.hf_transformers import HFBackend
from progresslm.checkpoints import CheckpointError, weights_id
from progresslm.nano import VLM_DIR, vlm_dir
from progresslm.nano.demo_cache import DemoCache

NANO_MAX_NEW_TOKENS = 64  # its replies are ~25 tokens; a confused one stops here instead of at 512
DEFAULT_MAX_NEW_TOKENS = BackendOptions().max_new_tokens


class NanoBackend(HFBackend):
    """The `hf` backend preset to the shipped ProgressLM-nano checkpoint, with matcher hints."""

    default_hints: ClassVar[str | None] = "matcher"

    def __init__(self, options: BackendOptions, mode: str):
        changes = {}
        if not options.model:
            try:
                changes["model"] = str(vlm_dir())
            except CheckpointError as err:
                raise BackendError(str(err)) from None
        if options.max_new_tokens == DEFAULT_MAX_NEW_TOKENS:
            changes["max_new_tokens"] = NANO_MAX_NEW_TOKENS
        super().__init__(dataclasses.replace(options, **changes), mode)

        # None for a checkpoint the cache does not fit (not a FastVLM): it is then asked like any hf model.
        self.demo_cache = None if DemoCache.unsupported(self.model, self.processor) else DemoCache(self.model, self.processor)

    def _model_inputs(self, texts: list[str], images: list[Any]) -> dict[str, Any]:
        if self.demo_cache is None:
            return super()._model_inputs(texts, images)
        return self.demo_cache.inputs(texts, images)

    def close(self) -> None:
        self.demo_cache = None  # it holds the model and its tensors: let them go with the model
        super().close()

    @property
    def model_name(self) -> str:
        model = Path(self.options.model)
        if model.resolve() == VLM_DIR.resolve():
            return f"progresslm-nano@{weights_id(VLM_DIR)}"
        return str(model)
