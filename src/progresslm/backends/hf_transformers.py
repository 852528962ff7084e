"""A local transformers VLM (Qwen2.5-VL, Qwen3-VL and kin) through AutoProcessor + AutoModelForImageTextToText.

Prompts are batched with left padding so every row's answer starts at the same column; only the
new tokens are decoded, with special tokens kept (a trained model's `<ref>` / `<score>` tags may
be special tokens) and the chat end tokens stripped.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request

INSTALL_HINT = "pip install -e '.[hf]' (in the progresslm clone)"
DTYPES = ("auto", "float32", "bfloat16", "float16")
# owner/name as the hub spells repository ids; anything else that is not on disk is a bad path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def image_part_count(messages: list[dict]) -> int:
    """How many image parts a chat prompt has.

    >>> image_part_count([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}])
    1
    """
    return sum(
        1
        for message in messages
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part.get("type") == "image"
    )


def strip_end_tokens(text: str, end_tokens: Sequence[str]) -> str:
    """A decoded answer without the chat end tokens after it (and the whitespace around).

    >>> strip_end_tokens("<ref>2</ref><score>40%</score><|im_end|><|endoftext|>", ["<|im_end|>", "<|endoftext|>"])
    '<ref>2</ref><score>40%</score>'
    """
    text = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for token in end_tokens:
            if token and text.endswith(token):
                text = text[: -len(token)].rstrip()
                stripped = True
    return text


def batch_seed(seed: int, requests: Sequence[Request]) -> int:
    """The sampling seed for one batch: fixed by the options' seed and which (uid, draw) pairs are in
    it, so a rerun (or a resumed run) samples the same answers and two draws of one sample differ."""
    keys = "\n".join(f"{request.uid}#{request.draw}" for request in requests)
    return (seed * 1_000_003 + zlib.crc32(keys.encode())) % (2**63)


def resolve_model(model: str | None, backend: str) -> str:
    """A model directory that exists, or a hub id; anything else is a BackendError that says which."""
    if not model:
        raise BackendError(f"the {backend} backend needs a model: a local directory or a hub id (--model)")
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BackendError(f"model path {path} is a file; give the directory that holds config.json")
        return str(path)
    if not _HUB_ID.match(model):
        raise BackendError(f"model path {model} does not exist (and is not a hub id like Qwen/Qwen2.5-VL-3B-Instruct)")
    return model


class HFBackend(Backend):
    """Generates with a transformers vision-language model on this machine (GPU if there is one)."""

    image_format = "pil"
    chunk_size = 32  # a few batches per harness call, so replies are saved as batches finish

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)
        source = resolve_model(options.model, "hf")
        if options.batch_size < 1:
            raise BackendError(f"batch_size must be at least 1, got {options.batch_size}")
        if options.dtype not in DTYPES:
            raise BackendError(f"unknown dtype {options.dtype!r}; valid: {', '.join(DTYPES)}")
        try:
            import torch  # lazy: torch and transformers (the [hf] extra)
            import transformers  # noqa: F401
        except ImportError as error:
            raise BackendError(f"the hf backend needs torch and transformers: {INSTALL_HINT} ({error})") from error
        self._torch = torch
        self.device = self._resolve_device(options.device)
        self.dtype = self._resolve_dtype(options.dtype)
        self.processor, self.model = self._load(source)
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # answers start at the same column for every row of a batch
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if options.max_pixels is not None:
            image_processor = self.processor.image_processor
            if "longest_edge" not in (image_processor.size or {}):
                raise BackendError(
                    f"--max-pixels: this model's {type(image_processor).__name__} resizes every image to "
                    f"{dict(image_processor.size)}, not by pixel count; leave --max-pixels out"
                )
            shortest = min(image_processor.size.get("shortest_edge") or options.max_pixels, options.max_pixels)
            image_processor.size = {"shortest_edge": shortest, "longest_edge": options.max_pixels}
        self._stop_ids = self._stop_token_ids()
        self._end_tokens = [t for t in ("<|im_end|>", "<|endoftext|>", tokenizer.eos_token, tokenizer.pad_token) if t]

    # -- loading ---------------------------------------------------------------------------------

    def _resolve_device(self, device: str) -> str:
        if device == "auto":
            return "cuda" if self._torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not self._torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
        return device

    def _resolve_dtype(self, dtype: str):
        torch = self._torch
        if dtype == "auto":
            # bfloat16 where the GPU has it; float32 on the CPU, where half precision is slow or missing.
            if self.device.startswith("cuda"):
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        return getattr(torch, dtype)

    def _load(self, source: str) -> tuple[Any, Any]:
        from transformers import AutoModelForImageTextToText, AutoProcessor  # lazy: transformers (the [hf] extra)

        adapter_config = Path(source) / "adapter_config.json"
        peft_model = self._peft_model_class(source) if adapter_config.is_file() else None
        base = json.loads(adapter_config.read_text())["base_model_name_or_path"] if peft_model else source
        # An adapter directory may carry its own processor (trainers save it there); else the base's.
        processor_files = ("processor_config.json", "preprocessor_config.json")
        processor_source = source if any((Path(source) / name).is_file() for name in processor_files) else base
        try:
            processor = AutoProcessor.from_pretrained(processor_source)
            model = AutoModelForImageTextToText.from_pretrained(base, dtype=self.dtype, device_map=self.device)
        except Exception as error:
            raise BackendError(f"could not load model {base!r}: {type(error).__name__}: {error}") from error
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise BackendError(
                f"{processor_source!r} gave a {type(processor).__name__}, not a vision-language processor; "
                "check that the processor files are saved with the model and that torchvision is installed"
            )
        if peft_model is not None:
            try:
                # Merged so generation runs at the base model's speed.
                model = peft_model.from_pretrained(model, source).merge_and_unload()
            except Exception as error:
                message = f"could not apply the LoRA adapter in {source}: {type(error).__name__}: {error}"
                raise BackendError(message) from error
        return processor, model.to(self.device).eval()

    @staticmethod
    def _peft_model_class(adapter_dir: str):
        try:
            from peft import PeftModel  # lazy: peft (the [train] extra), only for a LoRA adapter
        except ImportError as error:
            hint = "pip install peft"
            raise BackendError(f"{adapter_dir} holds a LoRA adapter; loading it needs peft: {hint}") from error
        return PeftModel

    def _stop_token_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        tokenizer = self.processor.tokenizer
        ids.update(i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None)
        return ids

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        size = self.options.batch_size
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            began = time.perf_counter()
            answers = self._generate_batch(batch)
            latency = (time.perf_counter() - began) / len(batch)
            for offset, (text, prompt_tokens, completion_tokens) in enumerate(answers):
                yield start + offset, Reply(text, latency, prompt_tokens, completion_tokens)

    def _generate_batch(self, batch: Sequence[Request]) -> list[tuple[str, int, int]]:
        torch = self._torch
        images = []
        for request in batch:
            expected = image_part_count(request.prompt.messages)
            if len(request.images) != expected:
                raise BackendError(
                    f"request {request.uid}: the prompt has {expected} image parts "
                    f"but {len(request.images)} images came with it"
                )
            images.extend(request.images)
        texts = [
            self.processor.apply_chat_template(request.prompt.messages, add_generation_prompt=True, tokenize=False)
            for request in batch
        ]
        inputs = self._model_inputs(texts, images)
        options = self.options
        sampling = options.temperature > 0
        # repetition_penalty 1 as vLLM's SamplingParams and TRL's GRPO rollouts: transformers fills every option
        # left unset from the checkpoint's generation_config, and Qwen2.5-VL's holds repetition_penalty 1.05, which
        # would penalise the digits of a score that appear in the prompt (the step percentages).
        settings: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "do_sample": sampling,
            "repetition_penalty": 1.0,
        }
        if sampling:
            settings.update(temperature=options.temperature, top_p=options.top_p, top_k=0)
            torch.manual_seed(batch_seed(options.seed, batch))
        else:
            # Unset the checkpoint's sampling defaults so greedy decoding does not warn about them.
            settings.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **settings, pad_token_id=self.processor.tokenizer.pad_token_id)
        prompt_width = inputs["input_ids"].shape[1]
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        answers = []
        for row, prompt_tokens in zip(output[:, prompt_width:].tolist(), prompt_lengths):
            # Up to and including the first stop token: the rest is padding after the row finished.
            length = next((i + 1 for i, token in enumerate(row) if token in self._stop_ids), len(row))
            text = self.processor.tokenizer.decode(row[:length], skip_special_tokens=False)
            answers.append((strip_end_tokens(text, self._end_tokens), int(prompt_tokens), length))
        return answers

    def _model_inputs(self, texts: list[str], images: list[Any]) -> dict[str, Any]:
        """`model.generate`'s inputs for a batch of chat texts and their images (in the texts' order)."""
        return dict(self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(self.device))

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
