"""What a request may carry: the body-size limit (an ASGI middleware) and multipart form reading."""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from progresslm.serve.config import ServeConfig
from progresslm.serve.errors import ApiError, error_body

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


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so, else as the
    bytes arrive (chunked uploads), before any handler parses them."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

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

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
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
