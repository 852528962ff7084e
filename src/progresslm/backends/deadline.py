"""A limit on a whole HTTP request, bytes and all: httpx's timeouts bound each socket operation, so a server that
sends one byte a second never trips them. `deadline_transport()` gives an httpx transport whose every connect, read
and write waits at most until the calling thread's deadline (`request_deadline`); past it, the operation times out
as if the server had gone quiet. Requests are sent from the thread that set the deadline (httpx's sync client), so
a per-thread deadline covers reused keep-alive connections too."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx


class _Deadline(threading.local):
    at: float | None = None  # time.monotonic() by which the current request must be over


_DEADLINE = _Deadline()


@contextmanager
def request_deadline(seconds: float) -> Iterator[float]:
    """Within the block, socket operations of this thread end by `seconds` from now; yields that monotonic time."""
    _DEADLINE.at = at = time.monotonic() + seconds
    try:
        yield at
    finally:
        _DEADLINE.at = None


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to what is left of this thread's deadline; `error` when nothing is left (a socket timeout of 0
    would mean non-blocking, not "no time")."""
    if _DEADLINE.at is None:
        return timeout
    left = _DEADLINE.at - time.monotonic()
    if left <= 0:
        raise error("the request's time limit is used up")
    return left if timeout is None else min(timeout, left)


def deadline_transport(**options: Any):
    """An `httpx.HTTPTransport(**options)` whose network operations honour `request_deadline`. When httpx's internals
    are not as expected, the plain transport (the caller's checks between chunks remain)."""
    class Stream(httpcore.NetworkStream):
        def __init__(self, stream: httpcore.NetworkStream) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
            return Stream(self._stream.start_tls(ssl_context, server_hostname,
                                                 _bounded(timeout, httpcore.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self, backend: httpcore.NetworkBackend) -> None:
            self._backend = backend

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            return Stream(self._backend.connect_tcp(host, port, _bounded(timeout, httpcore.ConnectTimeout),
                                                    local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            return Stream(self._backend.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout),
                                                            socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    transport = httpx.HTTPTransport(**options)
    pool = getattr(transport, "_pool", None)
    if isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
        pool._network_backend = Backend(pool._network_backend)
    return transport
