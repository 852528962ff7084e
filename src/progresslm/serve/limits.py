"""What a request may carry: the body-size limit (an ASGI middleware) and multipart form reading."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from progresslm.serve.errors import ApiError, error_body
from progresslm.serve.serve_config import ServeConfig

LIST_FIELDS = ("demo_images", "demo_steps", "frames", "timestamps")
JSON_FIELDS = ("monitor",)
DRAIN_FACTOR = 4  # a too-large body up to 4x the limit is read and dropped, so the client sees the 413


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes pass the limit; an HTTPException so that FastAPI's body
    reading lets it through (it turns other errors into a 400) and the app answers 413."""

    def __init__(self, limit_bytes: int):
        limit_mb = limit_bytes / (1024 * 1024)
        super().__init__(413, f"the body passed {limit_bytes} bytes, more than this server's limit of {limit_mb:g} MB "
                         "(--max-body-mb); send fewer or smaller images per request")  # fmt: skip


class BodyTimeout(HTTPException):
    """Raised from `receive` when a body stops arriving: a client that sends a few bytes a minute must not
    hold a connection (and a worker) for ever."""

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s (--body-timeout)")


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so, else as the
    bytes arrive (chunked uploads), before any handler parses them; and bodies that do not arrive within
    `timeout_s` with 408."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 15.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:
            length = None
        if length is not None and length > self.max_bytes:
            if length <= DRAIN_FACTOR * self.max_bytes:
                await self._drain(receive)  # a client still sending would see a reset instead of the answer
            await self._refuse(send, f"the body is {length} bytes")
            return
        received = 0
        started = False
        complete = False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited_receive() -> dict:
            nonlocal received, complete
            if complete:  # after the body, receive() waits for a disconnect: no deadline there
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, f"the body passed {self.max_bytes} bytes")
        except BodyTimeout as error:
            if not started:
                await _send_error(send, 408, error.detail, "body", "body_timeout")

    @staticmethod
    async def _drain(receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _refuse(self, send: Any, what: str) -> None:
        limit_mb = self.max_bytes / (1024 * 1024)
        body = error_body(413, f"{what}, more than this server's limit of {limit_mb:g} MB (--max-body-mb); "
                          "send fewer or smaller images per request", "body", "body_too_large")  # fmt: skip
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Any, status: int, message: str, where: str | None, code: str, headers=()) -> None:
    payload = json.dumps(error_body(status, message, where, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


class ApiKeyAuth:
    """`Authorization: Bearer <key>` on every route but `/health` (which load balancers poll), compared in
    constant time; anything else is a 401 before the body is read."""

    OPEN = ("/health",)

    def __init__(self, app: Any, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.OPEN:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        what = "wrong API key" if header else "missing API key"
        await _send_error(send, 401, f"{what}: send 'Authorization: Bearer <key>' (progresslm eval --backend openai "
                          "reads it from --api-key-env)", "authorization", "invalid_api_key",
                          [(b"www-authenticate", b"Bearer")])  # fmt: skip


async def read_form(request: Any, file_fields: tuple[str, ...], config: ServeConfig) -> dict:
    """A multipart form as the fields of a JSON body: files as base64 strings (checked later, like
    JSON images), repeated fields as lists, `monitor` parsed from JSON text."""
    form = await request.form(max_files=config.max_images + config.max_frames_per_call,
                              max_fields=config.max_images + config.max_frames_per_call + 16,
                              max_part_size=config.max_body_bytes)  # fmt: skip
    fields: dict[str, Any] = {}
    try:
        for name in set(form.keys()):
            values = []
            for value in form.getlist(name):
                if isinstance(value, UploadFile):
                    if name not in file_fields:
                        raise ApiError(400, f"a file was sent in field {name!r}; files go in: {', '.join(file_fields)}", name)
                    values.append(base64.b64encode(await value.read()).decode("ascii"))
                else:
                    values.append(value)
            if name in LIST_FIELDS:
                fields[name] = values
            elif len(values) > 1:
                raise ApiError(400, f"given {len(values)} times; give it once", name)
            elif name in JSON_FIELDS:
                try:
                    fields[name] = json.loads(values[0])
                except json.JSONDecodeError as error:
                    raise ApiError(400, f"expected a JSON object in this form field ({error.msg})", name) from None
            else:
                fields[name] = values[0]
    finally:
        await form.close()
    return fields
