"""vLLM's offline engine (`vllm.LLM` + `llm.chat`) for fast local generation on a CUDA GPU.

The engine batches and schedules on its own, so each harness chunk goes to `llm.chat` in one call.
Images travel as data URLs in OpenAI-style `image_url` parts, the form `llm.chat` parses.
"""

from __future__ import annotations

import gc
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request
from progresslm.backends.hf_transformers import resolve_model, strip_end_tokens

INSTALL_HINT = "pip install -e '.[vllm]' (in the progresslm clone) (vLLM runs on a CUDA GPU; on a CPU use the hf backend)"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def to_openai_messages(messages: list[dict], images: Sequence[str]) -> list[dict]:
    """Chat messages with `{"type": "image"}` placeholders as OpenAI-style messages, the i-th
    placeholder replaced by an `image_url` part holding `images[i]` (a data URL or http URL).

    >>> messages = [{"role": "user", "content": [{"type": "text", "text": "see "}, {"type": "image"}]}]
    >>> to_openai_messages(messages, ["data:image/jpeg;base64,AA=="])[0]["content"][1]
    {'type': 'image_url', 'image_url': {'url': 'data:image/jpeg;base64,AA=='}}
    """
    remaining = iter(images)
    used = 0
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            converted.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part["type"] == "image":
                url = next(remaining, None)
                if url is None:
                    raise ValueError(f"the messages have more image parts than the {len(images)} images given")
                used += 1
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append(dict(part))
        converted.append({"role": message["role"], "content": parts})
    if used != len(images):
        raise ValueError(f"the messages have {used} image parts but {len(images)} images were given")
    return converted


def request_seed(seed: int, request: Request) -> int:
    """A sampling seed per request, from the options' seed and the request's (uid, draw): the same
    answers on a rerun however requests are batched, different ones for each draw."""
    return (seed * 1_000_003 + zlib.crc32(f"{request.uid}#{request.draw}".encode())) % (2**31)


class VLLMBackend(Backend):
    """Generates with vLLM's offline engine on this machine's GPU."""

    image_format = "data_url"
    chunk_size = 512  # vLLM is fastest with many prompts in flight; the engine schedules them itself

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)
        self.model_path = resolve_model(options.model, "vllm")
        try:
            import vllm  # lazy: vllm (the [vllm] extra)
        except ImportError as error:
            raise BackendError(f"the vllm backend needs vLLM: {INSTALL_HINT} ({error})") from error
        self._vllm = vllm
        self._llm: Any = None
        self._image_limit = 0

    def _engine(self, images_per_prompt: int):
        """The engine, (re)built when a prompt needs more images than it was sized for: vLLM
        reserves memory for `limit_mm_per_prompt` images, so the limit is the largest count seen."""
        if self._llm is not None and images_per_prompt <= self._image_limit:
            return self._llm
        self.close()
        settings: dict[str, Any] = {
            "model": self.model_path,
            "dtype": self.options.dtype,
            "seed": self.options.seed,
            "limit_mm_per_prompt": {"image": max(images_per_prompt, 1)},
        }
        if self.options.max_pixels is not None:
            settings["mm_processor_kwargs"] = {"max_pixels": self.options.max_pixels}
        try:
            self._llm = self._vllm.LLM(**settings)
        except Exception as error:
            raise BackendError(f"vLLM could not load {self.model_path!r}: {type(error).__name__}: {error}") from error
        self._image_limit = max(images_per_prompt, 1)
        return self._llm

    def _sampling(self, request: Request):
        options = self.options
        sampling = options.temperature > 0
        return self._vllm.SamplingParams(
            temperature=options.temperature,
            top_p=options.top_p if sampling else 1.0,
            max_tokens=options.max_new_tokens,
            seed=request_seed(options.seed, request) if sampling else None,
            # Keep `<ref>`-style tags a trained tokenizer may hold as special tokens.
            skip_special_tokens=False,
        )

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        if not requests:
            return
        try:
            conversations = [to_openai_messages(r.prompt.messages, r.images) for r in requests]
        except ValueError as error:
            raise BackendError(f"a request's images do not match its prompt: {error}") from error
        llm = self._engine(max(len(r.images) for r in requests))
        began = time.perf_counter()
        outputs = llm.chat(conversations, [self._sampling(r) for r in requests], use_tqdm=False)
        latency = (time.perf_counter() - began) / len(requests)
        for index, output in enumerate(outputs):
            completion = output.outputs[0]
            text = strip_end_tokens(completion.text, END_TOKENS)
            yield index, Reply(text, latency, len(output.prompt_token_ids or ()), len(completion.token_ids))

    def close(self) -> None:
        if self._llm is None:
            return
        self._llm = None

        gc.collect()
        try:
            import torch  # lazy: torch (comes with vLLM)

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
