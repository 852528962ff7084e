"""A fake OpenAI-compatible chat-completions server for offline tests.

It records every request, can be told to fail the first N calls (429, 503, a dropped connection,
or any status with a message) or every call after the first N (a server gone down), counts the most
requests it had in flight at once, and answers with a fixed reply (or one computed from the request)
and token usage.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class FakeServer:
    """Script it through its fields before a test sends requests."""

    reply: str | None = "42%"
    reply_for: Callable[[dict], str] | None = None  # the reply as a function of the request body, instead of `reply`
    usage: dict | None = field(default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 3})
    fail_first: int = 0  # the first N calls fail as `fail_with` says
    fail_with: str = "503"  # "429" | "503" | "close" | any other status code
    fail_message: str = "try again later"
    retry_after: str | None = None  # sent with 429 / 503 failures
    down_after: int | None = None  # every call after the first N fails as `fail_with` says (a server gone down)
    delay_s: float = 0.0  # every answer waits this long, so concurrent requests overlap
    requests: list[Recorded] = field(default_factory=list)
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def enter(self) -> tuple[int, bool]:
        """Count a call in; returns its number (1-based) and whether it is to fail."""
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            down = self.down_after is not None and self.calls > self.down_after
            return self.calls, self.calls <= self.fail_first or down

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            _, fail = server.enter()
            try:
                with server._lock:
                    server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if server.delay_s:
                    time.sleep(server.delay_s)
                if fail:
                    self._fail()
                elif self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                else:
                    content = server.reply_for(body) if server.reply_for is not None else server.reply
                    message = {"role": "assistant", "content": content}
                    answer = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
                    if server.usage is not None:
                        answer["usage"] = server.usage
                    self._send(200, answer)
            finally:
                server.leave()

        def _fail(self) -> None:
            if server.fail_with == "close":
                self.close_connection = True
                self.connection.close()  # no status line at all: the client sees a dropped connection
                return
            headers = {"Retry-After": server.retry_after} if server.retry_after else {}
            self._send(int(server.fail_with), {"error": {"message": server.fail_message}}, headers)

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
