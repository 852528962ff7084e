"""Issue 25, item 7: `--ray-address` at something that is not Ray's head fails within 15 s with a message naming the
address (a plain TCP listener held `ray.init` for 123 s). Listeners on 127.0.0.1; no Ray instance is started."""

from __future__ import annotations

import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("ray")

from progresslm.builder.engines import EngineError, run_jobs  # noqa: E402


def refused_in_time(address: str) -> str:
    started = time.monotonic()
    with pytest.raises(EngineError) as error:
        list(run_jobs(math.factorial, [3], ["job"], engine="ray", address=address))
    assert time.monotonic() - started < 15
    message = str(error.value)
    assert address in message and "\n" not in message
    return message


def test_a_tcp_listener_that_never_answers_is_refused_within_15_s():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        message = refused_in_time(f"127.0.0.1:{listener.getsockname()[1]}")
        assert "does not answer as a Ray cluster's head" in message and "ray start --head" in message
    finally:
        listener.close()


def test_a_web_server_is_refused_as_not_ray():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        assert "not as a Ray cluster's head (not gRPC" in refused_in_time(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
