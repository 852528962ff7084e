"""Command-line options more than one command shares: the backend options (the fields of BackendOptions, spelled
and defaulted the same in `eval`, `watch` and `serve`), and safe names for default output folders."""

from __future__ import annotations

import argparse
import re

from progresslm.backends.base import BackendOptions


def add_backend_options(parser: argparse.ArgumentParser, **help_for: str) -> None:
    """The backend options (the fields of BackendOptions), spelled and defaulted the same in every
    command that runs a backend (`eval`, `watch`, `serve`); `help_for` rewords an option's help for a
    command where it means something more (keys are destinations, e.g. temperature=...)."""
    group = parser.add_argument_group("backend options")
    defaults = BackendOptions()
    helps = {
        "model": "model name (openai), path or hub id (hf, vllm, nano), checkpoint folder (matcher), "
        "calibration JSON (retrieval)",
        "base_url": "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
        "api_key_env": "environment variable holding the API key",
        "timeout_s": "seconds per request",
        "batch_size": "hf, vllm: prompts per generate call",
        "temperature": "0 means greedy",
        "max_pixels": "cap on image pixels handed to the processor (hf, vllm)",
        "value": "constant: the percentage it answers",
        "replies": 'replay: JSONL of {"uid": ..., "reply": ...}',
        "token_param": "openai: the name of the reply-length field (GPT-5 and o-series models want "
        "max_completion_tokens)",
        "sampling_params": "openai: send no temperature, top_p or seed (models that refuse them)",
        **help_for,
    }
    group.add_argument("--model", help=helps["model"])
    group.add_argument("--base-url", help=helps["base_url"])
    group.add_argument("--api-key-env", default=defaults.api_key_env, help=helps["api_key_env"])
    group.add_argument("--concurrency", type=int, default=defaults.concurrency)
    group.add_argument("--timeout", type=float, default=defaults.timeout_s, dest="timeout_s", help=helps["timeout_s"])
    group.add_argument("--max-retries", type=int, default=defaults.max_retries)
    group.add_argument("--device", default=defaults.device)
    group.add_argument("--dtype", default=defaults.dtype)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help=helps["batch_size"])
    group.add_argument("--temperature", type=float, default=defaults.temperature, help=helps["temperature"])
    group.add_argument("--top-p", type=float, default=defaults.top_p)
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help=helps.get("max_new_tokens"))
    group.add_argument("--max-pixels", type=int, help=helps["max_pixels"])
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--value", type=float, default=defaults.value, help=helps["value"])
    group.add_argument("--replies", help=helps["replies"])
    group.add_argument("--token-param", default=defaults.token_param, choices=["max_tokens", "max_completion_tokens"],
                       help=helps["token_param"])  # fmt: skip
    group.add_argument("--no-sampling-params", dest="sampling_params", action="store_false",
                       help=helps["sampling_params"])  # fmt: skip

def backend_options(args: argparse.Namespace) -> BackendOptions:
    """BackendOptions from the options `add_backend_options` added."""
    return BackendOptions(**{name: getattr(args, name) for name in BackendOptions.__dataclass_fields__})

def slug(text: str) -> str:
    """`text` as a safe file or folder name (at most 60 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60]
