"""What every backend implements, and the records that pass between the harness and a backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from progresslm.prompts import Prompt
from progresslm.types import Sample


class BackendError(RuntimeError):
    """A backend could not produce replies (unreachable server, missing package, bad model path)."""


@dataclass
class BackendOptions:
    """Every backend option the CLI knows; each backend reads the ones it needs."""

    model: str | None = None  # model name (API) or path (hf, vllm)
    # OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; several replicas of one model: a list of such roots
    # (or one string of them joined by commas)
    base_url: str | list[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never a flag
    concurrency: int = 8  # requests in flight at once (openai), on each replica when base_url names several
    timeout_s: float = 120.0  # per request
    max_retries: int = 5  # on 429, 5xx and connection errors, with exponential backoff
    device: str = "auto"  # hf: auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # hf: auto | float32 | bfloat16 | float16
    batch_size: int = 8  # hf, vllm: prompts per generate call
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    value: float = 50.0  # constant: the percentage it always answers
    replies: str | None = None  # replay: JSONL of {"uid": ..., "reply": ...}
    max_pixels: int | None = None  # hf, vllm: image resolution cap handed to the processor
    token_param: str = "max_tokens"  # openai: "max_completion_tokens" for GPT-5 and o-series models
    sampling_params: bool = True  # openai: False leaves temperature, top_p and seed out of requests


@dataclass(frozen=True)
class Request:
    """One reply to produce: a prompt for one draw of one sample, with its images encoded as the
    backend's `image_format` asks (data URLs, PIL images, float arrays, or none)."""

    uid: str
    draw: int
    prompt: Prompt
    sample: Sample
    images: tuple[Any, ...] = ()


@dataclass
class Reply:
    text: str
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # the backend refused this one request (e.g. HTTP 400); scored as no answer


class Backend(ABC):
    """Turns requests into replies. Replies may come back in any order: `generate` yields
    `(index into requests, Reply)` as each is ready, so the harness can save it at once."""

    image_format: ClassVar[str] = "none"  # none | data_url | pil | array
    reads_images: ClassVar[bool] = False  # reads the image files itself (so the harness checks they exist)
    chunk_size: ClassVar[int] = 64  # requests the harness hands over per `generate` call
    default_hints: ClassVar[str | None] = None  # prompt hints the backend's model was trained with ("matcher")

    def __init__(self, options: BackendOptions, mode: str):
        self.options = options
        self.mode = mode

    @property
    def model_name(self) -> str:
        return self.options.model or type(self).__name__

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        """Yield `(i, reply)` for each `requests[i]`, in any order."""

    def run_stats(self) -> dict | None:
        """JSON-able figures of the requests made so far that a run folder should keep (the openai backend: each
        replica's requests, failures and mean latency); None when there is nothing to keep."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to release
        """Release connections, engines or GPU memory."""
