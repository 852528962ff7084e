"""The work behind each endpoint, in plain functions that run on a thread-pool thread.

Nothing here knows about HTTP beyond `ApiError`: the request bodies are already parsed
(`schemas`), and the results are JSON-able dicts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progresslm.backends.base import Backend, Request
from progresslm.matcher.hints import HintError, HintProvider
from progresslm.online.monitor import MonitorError, ProgressMonitor
from progresslm.online.scorer import ProgressScorer, ScorerError
from progresslm.prompts import Prompt
from progresslm.serve.answers import Asked, mode_for, question_requests
from progresslm.serve.batcher import BatchedBackend, Batcher, QueueFull, Settings, ShuttingDown
from progresslm.serve.chat import generic_sample, own_prompt, read_messages, recognise_sample
from progresslm.serve.errors import ApiError
from progresslm.serve.questions import NotAQuestion, read_question
from progresslm.serve.request_images import (
    SUFFIXES,
    ImageFiles,
    PixelBudget,
    RequestPixels,
    Upload,
    decode_image_string,
    encode_for,
)
from progresslm.serve.schemas import ChatCompletionBody, DemoFields, FramesBody, ProgressBody, SessionBody
from progresslm.serve.serve_config import ServeConfig
from progresslm.serve.sessions import SessionStore


class ServerState:
    """Everything the routes share: settings, the backend behind its batcher, sessions, image files."""

    def __init__(self, config: ServeConfig, backend: Backend):
        self.config = config
        self.backend = backend
        self.model_name = backend.model_name
        self.batcher = Batcher(backend, config.max_batch, config.batch_wait_ms / 1000.0, config.max_queue)
        self.sessions = SessionStore(config.max_sessions, config.session_ttl_s)
        self.files = ImageFiles()
        self.pixels = PixelBudget(config.max_request_pixels, config.max_inflight_pixels)
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.closing = False
        self._hints = None
        self._hints_lock = threading.Lock()

    def model_names(self) -> tuple[str, ...]:
        """The names the server answers to: --served-model-name, else the backend's own (and any name is taken)."""
        return tuple(self.config.served_model_names) or (self.model_name,)

    def reply_model(self, asked: str | None) -> str:
        """The model a chat reply names: the name asked when the server restricts names (aliases, as vLLM does),
        else the served model. A name outside --served-model-name is a 404."""
        names = self.config.served_model_names
        if not names:
            return self.model_name
        if asked is None:
            return names[0]
        if asked not in names:
            raise ApiError(404, f"the model {asked!r} does not exist; this server serves {', '.join(names)}",
                           "model", "model_not_found")  # fmt: skip
        return asked

    def hint_lines(self, samples: list) -> dict[str, str]:
        """uid -> the hints line the backend's model was trained with, from the matcher (built once, on first use;
        one caller at a time: its caches are not thread-safe)."""
        with self._hints_lock:
            if self._hints is None:
                try:
                    self._hints = HintProvider(None, device=getattr(self.backend.options, "device", "cpu"))
                except HintError as error:
                    raise ApiError(503, f"the prompt hints cannot be made: {error}", code="hints_unavailable") from None
            return self._hints.hints(samples, None)

    def health(self) -> dict:
        self.sessions.expire()
        return {
            "status": "draining" if self.closing else "ok",
            "model": self.model_name,
            "backend": self.config.backend,
            "mode": self.config.mode,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "queue_depth": self.batcher.depth,
            "max_batch": self.config.max_batch,
            "sessions": len(self.sessions),
            "pixels_in_flight": self.pixels.inflight,
            "batching": self.batcher.stats.to_dict(),
        }

    def settings(self, mode: str | None = None, temperature: float | None = None) -> Settings:
        base = self.batcher.default_settings(mode or self.config.mode)
        if temperature is None:
            return base
        return Settings(base.mode, temperature, base.top_p, base.max_new_tokens, base.seed)

    def close(self, close_backend: bool) -> None:
        self.closing = True
        self.batcher.close(self.config.drain_timeout_s)
        self.sessions.close()
        self.files.close()
        if close_backend:
            self.backend.close()


# -- /v1/chat/completions -------------------------------------------------------------------------


@dataclass
class ChatPlan:
    """What one chat body asks of the backend: its requests (n draws), their settings, the image files written for
    them (released by the caller with the request's pixels when the replies are in) and, for a progress question
    read from its structure, how to write the replies (`asked`)."""

    requests: list[Request]
    settings: Settings
    files: list[Path]
    asked: Asked | None = None


def needs_question(backend: Backend) -> bool:
    """Backends that answer a progress question, not free text: those that read the sample's images (the matcher,
    pixel-nn, retrieval) and models trained on progresslm's prompts with hints (nano)."""
    return backend.reads_images or backend.default_hints is not None


def chat_requests(state: ServerState, body: ChatCompletionBody, pixels: RequestPixels) -> ChatPlan:
    """The backend requests for one chat body: progresslm's own prompts as they came, a progress question read
    from another client's prompt rebuilt as `progresslm eval` builds it (for the backends that need one), any
    other chat as it came."""
    config, backend = state.config, state.backend
    chat = read_messages(body.messages, config.max_images, config.max_image_pixels, config.max_prompt_chars, pixels,
                         config.work_side)  # fmt: skip
    uid = chat.key()
    question_path = needs_question(backend)
    files = [state.files.acquire(upload) for upload in chat.uploads] if backend.reads_images or question_path else []
    try:
        placeholders = [f"image_{k}{SUFFIXES.get(u.format, '')}" for k, u in enumerate(chat.uploads)]
        names = [str(p) for p in files] or placeholders
        recognised = recognise_sample(chat.messages, names, uid)
        if recognised is None and question_path and not (own_prompt(chat.messages) and not backend.reads_images):
            try:
                question = read_question(chat.messages)
            except NotAQuestion as error:
                raise ApiError(400, f"{error}; the {config.backend} backend answers progress questions only",
                               "messages", "not_a_progress_prompt") from None  # fmt: skip
            mode = mode_for(question, config.mode)
            images = _encode_all(chat.uploads, backend.image_format, "messages")
            hints = state.hint_lines if backend.default_hints is not None else None
            asked = question_requests(question, uid, names, images, mode, body.n, hints)
            return ChatPlan(asked.requests, _chat_settings(state, body, mode), files, asked)
        sample, mode = recognised if recognised else (generic_sample(uid, names), config.mode)
        settings = _chat_settings(state, body, mode)
        images = _encode_all(chat.uploads, backend.image_format, "messages")
        prompt = Prompt(messages=chat.messages, images=[Path(name) for name in names], hash=uid)
        requests = [Request(uid, draw, prompt, sample, images) for draw in range(body.n)]
    except BaseException:
        state.files.release(files)
        raise
    return ChatPlan(requests, settings, files)


def _chat_settings(state: ServerState, body: ChatCompletionBody, mode: str) -> Settings:
    base = state.batcher.default_settings(mode)
    asked = body.max_completion_tokens or body.max_tokens
    max_tokens = asked or base.max_new_tokens
    cap = state.config.max_new_tokens_cap
    if asked and asked > cap:
        where = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise ApiError(400, f"{max_tokens} is more than this server allows ({cap}, --max-new-tokens-cap)", where)
    return Settings(
        mode=mode,
        temperature=base.temperature if body.temperature is None else body.temperature,
        top_p=base.top_p if body.top_p is None else body.top_p,
        max_new_tokens=max_tokens,
        seed=base.seed if body.seed is None else body.seed,
    )


def _encode_all(uploads: list[Upload], image_format: str, where: str) -> tuple[Any, ...]:
    if image_format == "none":
        return ()
    try:
        return tuple(encode_for(upload, image_format) for upload in uploads)
    except (OSError, ValueError) as error:  # bytes whose header read fine but whose pixels do not
        what = f"an image could not be decoded ({type(error).__name__}: {error})"
        raise ApiError(400, what, where, "bad_image") from None


# -- /v1/progress and sessions --------------------------------------------------------------------


def _pil(text: str, where: str, config: ServeConfig, pixels: RequestPixels | None = None):
    upload = decode_image_string(text, where, config.max_image_pixels, pixels, config.work_side)
    try:
        return upload.pil()
    except (OSError, ValueError) as error:
        what = f"the image could not be decoded ({type(error).__name__}: {error})"
        raise ApiError(400, what, where, "bad_image") from None


def _scorer(state: ServerState, body: DemoFields, pixels: RequestPixels | None = None) -> ProgressScorer:
    """A scorer for the body's goal and demonstration whose model calls join the shared queue."""
    config = state.config
    if (body.demo_images is None) == (body.demo_steps is None):
        raise ApiError(400, "give exactly one of demo_images (keyframes, base64) or demo_steps (text)", "demo_images")
    if body.demo_images is not None:
        if not 2 <= len(body.demo_images) <= config.max_images - 1:
            what = f"give 2 to {config.max_images - 1} keyframes (--max-images), got {len(body.demo_images)}"
            raise ApiError(400, what, "demo_images")
        demo, kind = [_pil(image, f"demo_images[{i}]", config, pixels) for i, image in enumerate(body.demo_images)], "visual"
    else:
        if not 1 <= len(body.demo_steps) <= config.max_demo_steps:
            what = f"give 1 to {config.max_demo_steps} steps (--max-demo-steps), got {len(body.demo_steps)}"
            raise ApiError(400, what, "demo_steps")
        demo, kind = list(body.demo_steps), "text"
    settings = state.settings(body.mode, body.temperature)
    try:
        # demo_kind is always given: a step text that happens to name a file must never be opened.
        backend = BatchedBackend(state.batcher, settings)
        return ProgressScorer(body.goal, demo, backend, mode=settings.mode, demo_kind=kind)
    except ScorerError as error:
        raise ApiError(400, str(error), code="invalid_demo") from None


def _score(call, *args):
    """Run a scoring call; queue and shutdown refusals become 503s."""
    try:
        return call(*args)
    except QueueFull as error:
        raise ApiError(503, f"the server is busy ({error}); retry shortly", code="queue_full") from None
    except ShuttingDown as error:
        raise ApiError(503, str(error), code="shutting_down") from None


def progress_estimate(state: ServerState, body: ProgressBody) -> dict:
    with state.pixels.request() as pixels:
        observation = _pil(body.observation, "observation", state.config, pixels)
        with _scorer(state, body, pixels) as scorer:
            (estimate,) = _score(scorer.score, [observation])
    return {**estimate.to_dict(), "na": estimate.is_na, "model": state.model_name}


def start_session(state: ServerState, body: SessionBody) -> dict:
    config = state.config
    samples = body.monitor.samples
    if not 1 <= samples * config.max_frames_per_call <= config.max_queue:
        # Every frame is asked `samples` times: more than the queue holds could never be served.
        most = max(config.max_queue // config.max_frames_per_call, 1)
        raise ApiError(400, f"samples must be 1 to {most} (--max-queue {config.max_queue} / --max-frames-per-call "
                       f"{config.max_frames_per_call}), got {samples}", "monitor.samples", "invalid_monitor")  # fmt: skip
    with state.pixels.request() as pixels:
        scorer = _scorer(state, body, pixels)
    try:
        monitor = ProgressMonitor(scorer, **body.monitor.model_dump())
        session = state.sessions.add(body.goal, monitor)
    except MonitorError as error:
        scorer.close()
        raise ApiError(400, str(error), "monitor", "invalid_monitor") from None
    except BaseException:
        scorer.close()
        raise
    return {"id": session.id, **session.describe(state.config.session_ttl_s)}


def session_frames(state: ServerState, session_id: str, body: FramesBody) -> dict:
    config = state.config
    if len(body.frames) > config.max_frames_per_call:
        raise ApiError(400, f"{len(body.frames)} frames; send at most {config.max_frames_per_call} per call "
                       "(--max-frames-per-call)", "frames")  # fmt: skip
    with state.pixels.request() as pixels:
        frames = [_pil(frame, f"frames[{i}]", config, pixels) for i, frame in enumerate(body.frames)]
        session = state.sessions.get(session_id)
        with session.lock:
            try:
                steps = _score(session.monitor.update_many, frames, body.timestamps)
            except MonitorError as error:
                raise ApiError(400, str(error), "timestamps" if "timestamps" in str(error) else "frames") from None
            session.last_used = time.monotonic()
    return {
        "id": session.id,
        "steps": [step.to_dict() for step in steps],
        "events": [event.to_dict() for step in steps for event in step.events],
        "summary": session.monitor.summary(),
    }
