"""Settings of one `progresslm serve` process, checked once when the server starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from progresslm.backends.base import BackendOptions
from progresslm.backends.registry import DEFAULT_BACKEND
from progresslm.prompts import MODES


class ServeConfigError(ValueError):
    """A setting that cannot work; the message names it and says what to use instead."""


@dataclass
class ServeConfig:
    """What the server runs (backend, mode, options) and the limits it enforces on every request."""

    backend: str = DEFAULT_BACKEND
    mode: str = "two-stage"  # the prompt mode of /v1/progress and sessions; chat requests bring their own prompt
    options: BackendOptions = field(default_factory=BackendOptions)
    host: str = "127.0.0.1"  # loopback only unless asked: the server has no authentication
    port: int = 8000
    max_batch: int = 8  # requests per backend.generate call; the hf default --batch-size is 8 too
    batch_wait_ms: float = 5.0  # how long the worker waits for company after the first request arrives
    max_queue: int = 256  # queued requests beyond this are refused with 503 (clients retry) instead of piling up
    max_body_mb: float = 20.0  # a request body larger than this is refused with 413 before it is parsed
    max_images: int = 32  # per request: the benchmark's longest demonstrations have ~10 keyframes
    max_image_pixels: int = 4_194_304  # per image (2048 x 2048): above 1080p, far below a decompression bomb
    max_new_tokens_cap: int = 4096  # the most a request may ask for with max_tokens
    max_sessions: int = 64  # live monitoring sessions; idle ones expire first when a new one needs room
    session_ttl_s: float = 600.0  # a session unused this long is closed
    max_frames_per_call: int = 64  # frames in one POST /v1/sessions/{id}/frames
    drain_timeout_s: float = 30.0  # on shutdown, queued requests get this long to finish before they are cancelled
    max_prompt_chars: int = 262_144  # text of one chat request (a progresslm prompt is ~2 kB); 413 above
    max_demo_steps: int = 256  # steps of a text demonstration (the release's longest have ~12)
    max_request_pixels: int = 33_554_432  # decoded pixels of one request's images (8 of 2048 x 2048); 413 above
    max_inflight_pixels: int = 134_217_728  # decoded pixels of all requests being served; 429 above
    work_side: int = 1024  # images are decoded down to this longest side (JPEG at decode time): no model reads more
    body_timeout_s: float = 15.0  # a request body that does not arrive within this is answered 408
    max_connections: int = 128  # open connections beyond this get a 503 before anything is read
    api_key: str | None = None  # when set, every route but /health needs "Authorization: Bearer <key>"
    # The model names a chat request may ask for (vLLM's --served-model-name): each is an alias of the served
    # model, and the reply names the one asked. Empty: any name is taken and the reply names the served model.
    served_model_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ServeConfigError(f"--mode {self.mode!r} is not one of: {', '.join(MODES)}")
        positive = {
            "--batch-size": self.max_batch,
            "--max-queue": self.max_queue,
            "--max-body-mb": self.max_body_mb,
            "--max-images": self.max_images,
            "--max-image-pixels": self.max_image_pixels,
            "--max-new-tokens-cap": self.max_new_tokens_cap,
            "--max-sessions": self.max_sessions,
            "--session-ttl": self.session_ttl_s,
            "--max-frames-per-call": self.max_frames_per_call,
            "--max-prompt-chars": self.max_prompt_chars,
            "--max-demo-steps": self.max_demo_steps,
            "--max-request-pixels": self.max_request_pixels,
            "--max-inflight-pixels": self.max_inflight_pixels,
            "--work-side": self.work_side,
            "--body-timeout": self.body_timeout_s,
            "--max-connections": self.max_connections,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise ServeConfigError(f"{flag} must be greater than 0, got {value}")
        if self.batch_wait_ms < 0:
            raise ServeConfigError(f"--batch-wait-ms must be 0 or more, got {self.batch_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ServeConfigError(f"--port must be between 0 and 65535 (0 picks a free one), got {self.port}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ServeConfigError("--api-key must be at least 8 characters (a guessable key protects nothing)")
        if self.max_request_pixels > self.max_inflight_pixels:
            raise ServeConfigError("--max-request-pixels must not exceed --max-inflight-pixels: such a request could never run")
        self.served_model_names = tuple(self.served_model_names)
        if any(not isinstance(name, str) or not name.strip() for name in self.served_model_names):
            raise ServeConfigError("--served-model-name: every name must be non-empty text")
        if self.max_images < 2:
            raise ServeConfigError(f"--max-images must be at least 2 (a demonstration needs 2 keyframes), got {self.max_images}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
