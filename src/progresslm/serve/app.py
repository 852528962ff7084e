"""The FastAPI application: OpenAI chat completions, one-shot progress, monitoring sessions, health.

Every model call goes through one `Batcher` (one worker thread owns the backend). Handlers turn
bad input into `ApiError`s (4xx, OpenAI-shaped JSON that says what and where); only a failure of
the server itself is a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from progresslm.backends.base import Backend
from progresslm.backends.registry import create_backend
from progresslm.serve.answers import format_reply, metadata
from progresslm.serve.batcher import QueueFull, Settings, ShuttingDown
from progresslm.serve.chat import completion
from progresslm.serve.errors import ApiError, error_body
from progresslm.serve.handlers import (
    ChatPlan,
    ServerState,
    chat_requests,
    progress_estimate,
    session_frames,
    start_session,
)
from progresslm.serve.limits import ApiKeyAuth, BodyLimit, read_form
from progresslm.serve.schemas import ChatCompletionBody, FramesBody, ProgressBody, SessionBody
from progresslm.serve.serve_config import ServeConfig
from progresslm.serve.streaming import chunks

log = logging.getLogger("progresslm.serve")


def create_app(config: ServeConfig, backend: Backend | None = None) -> FastAPI:
    """The app for `config`; `backend` (already built) is shared and left open, else one is built and owned."""
    owns_backend = backend is None
    if backend is None:
        backend = create_backend(config.backend, config.options, config.mode)
    state = ServerState(config, backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        yield
        # uvicorn has stopped taking connections and waited for requests in flight: drain, then release.
        await run_in_threadpool(state.close, owns_backend)

    app = FastAPI(title="progresslm serve", version="1", lifespan=lifespan)
    app.state.serve = state
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    if config.api_key:
        app.add_middleware(ApiKeyAuth, key=config.api_key)  # added last: runs first, before any body is read
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


# -- routes ---------------------------------------------------------------------------------------


def _add_routes(app: FastAPI, state: ServerState) -> None:  # noqa: C901 - one short handler per route
    config = state.config

    @app.get("/health")
    async def health() -> dict:
        return state.health()

    @app.get("/v1/models")
    async def models() -> dict:
        created = int(state.started_wall)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "progresslm",
                                            "root": state.model_name} for name in state.model_names()]}  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody):
        model = state.reply_model(body.model)
        pixels = state.pixels.request()
        try:
            plan = await run_in_threadpool(chat_requests, state, body, pixels)
            try:
                replies = await _answer(state, plan.requests, plan.settings)
            finally:
                state.files.release(plan.files)
        finally:
            pixels.release()
        for reply in replies:
            if reply.error:
                raise ApiError(400, f"the backend refused this request: {reply.error}", code="backend_refused")
        data = completion(_choices(plan, replies), model, plan.requests[0].uid, int(time.time()),
                          plan.settings.max_new_tokens)  # fmt: skip
        if plan.asked is not None:
            data["progresslm"] = metadata(plan.asked)
        if not body.stream:
            return data
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(chunks(data, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.post("/v1/progress")
    async def progress(request: HttpRequest) -> dict:
        body = await _read_body(request, ProgressBody, files=("demo_images", "observation"))
        return await run_in_threadpool(progress_estimate, state, body)

    @app.post("/v1/sessions")
    async def create_session(request: HttpRequest) -> dict:
        body = await _read_body(request, SessionBody, files=("demo_images",))
        return await run_in_threadpool(start_session, state, body)

    @app.post("/v1/sessions/{session_id}/frames")
    async def add_frames(session_id: str, request: HttpRequest) -> dict:
        state.sessions.get(session_id)  # 404 before the body is read
        body = await _read_body(request, FramesBody, files=("frames",))
        return await run_in_threadpool(session_frames, state, session_id, body)

    @app.get("/v1/sessions/{session_id}")
    async def get_session(session_id: str) -> dict:
        return state.sessions.get(session_id).describe(config.session_ttl_s)

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(session_id: str) -> dict:
        session = await run_in_threadpool(state.sessions.remove, session_id)
        return {"id": session.id, "deleted": True, "summary": session.monitor.summary()}


def _choices(plan: ChatPlan, replies: list) -> list[tuple[str, int | None, int | None]]:
    """(text, prompt tokens, completion tokens) per choice: a reply each, or for a question read from another
    client's prompt, one draw's replies to its frames written in the format it asked for."""
    if plan.asked is None:
        return [(reply.text, reply.prompt_tokens, reply.completion_tokens) for reply in replies]
    frames = plan.asked.frames()
    out = []
    for start in range(0, len(replies), frames):
        draw = replies[start : start + frames]
        prompt = [r.prompt_tokens for r in draw if r.prompt_tokens is not None]
        completed = [r.completion_tokens for r in draw if r.completion_tokens is not None]
        out.append((format_reply(plan.asked, [r.text for r in draw]), sum(prompt) if prompt else None,
                    sum(completed) if completed else None))  # fmt: skip
    return out


async def _answer(state: ServerState, requests: list, settings: Settings) -> list:
    """Queue the requests and wait for their replies without holding a thread."""
    try:
        futures = state.batcher.submit(requests, settings)
    except QueueFull as error:
        raise ApiError(503, f"the server is busy ({error}); retry shortly", code="queue_full") from None
    except ShuttingDown as error:
        raise ApiError(503, str(error), code="shutting_down") from None
    return list(await asyncio.gather(*(asyncio.wrap_future(future) for future in futures)))


async def _read_body(request: HttpRequest, model: type, files: tuple[str, ...]) -> Any:
    """A JSON body validated by `model`, or a multipart form whose file fields (`files`) are images.

    In a form, a repeated field is a list (demo_images, demo_steps, frames, timestamps); `monitor`
    is a JSON object in a text field."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    state: ServerState = request.app.state.serve
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = await read_form(request, files, state.config)
        try:
            return model.model_validate(fields, strict=False)  # form fields are text: "1.5" is a number here
        except ValidationError as error:
            raise _validation_error(error.errors()) from None
    if kind not in ("application/json", "text/json") and not kind.endswith("+json"):
        raise ApiError(415, f"content-type {kind!r} is not accepted; send application/json or multipart/form-data",
                       "content-type")  # fmt: skip
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise _validation_error(error.errors()) from None


# -- errors ---------------------------------------------------------------------------------------


def _where(loc: tuple) -> str:
    """A pydantic error location as a path: ("body", "messages", 0, "role") -> "messages[0].role"."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or part in ("str", "float", "int", "bool"):
            continue  # a union branch's name, not a place in the request
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _validation_error(errors: list[dict]) -> ApiError:
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return ApiError(400, f"the body is not valid JSON ({reason})", "body", "invalid_json")
    if _where(tuple(first.get("loc", ()))) == "body" and first.get("type") in ("model_attributes_type", "dict_type"):
        return ApiError(400, "expected a JSON object (send Content-Type: application/json)", "body", "invalid_json")
    seen, parts = set(), []
    for error in errors:
        where = _where(tuple(error.get("loc", ())))
        if where in seen:
            continue
        seen.add(where)
        message = "required field is missing" if error.get("type") == "missing" else error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(message if not parts else f"{where}: {message}")  # the first place leads the message
    more = f" (and {len(seen) - 3} more)" if len(seen) > 3 else ""
    return ApiError(400, "; ".join(parts[:3]) + more, _where(tuple(first.get("loc", ()))), "invalid_field")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: HttpRequest, error: ApiError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status in (429, 503) else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: HttpRequest, error: RequestValidationError) -> JSONResponse:
        api = _validation_error(list(error.errors()))
        return JSONResponse(api.body(), status_code=api.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: HttpRequest, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see GET /docs for the endpoints"
        return JSONResponse(error_body(error.status_code, message), status_code=error.status_code,
                            headers=getattr(error, "headers", None))  # fmt: skip

    @app.exception_handler(Exception)
    async def crashed(request: HttpRequest, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        message = f"the server failed on this request ({type(error).__name__}: {str(error)[:300]})"
        return JSONResponse(error_body(500, message), status_code=500)
