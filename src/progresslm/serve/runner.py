"""Running the app under uvicorn: in the foreground (`progresslm serve`), on a background thread on a
free loopback port (tests), or as a `progresslm serve --port 0` child process (`ServerProcess`: the
end-to-end test and `benchmarks/serve_load.py`)."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from progresslm.serve.serve_config import ServeConfig

log = logging.getLogger("progresslm.serve")


def uvicorn_config(app: Any, config: ServeConfig, log_level: str = "info"):
    import uvicorn  # lazy: uvicorn (the [serve] extra)

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        # On SIGINT / SIGTERM uvicorn stops accepting, waits this long for requests in flight, then
        # runs the app's shutdown, which drains the queue and cancels what is left.
        timeout_graceful_shutdown=config.drain_timeout_s,
        limit_concurrency=config.max_connections,  # beyond this uvicorn answers 503 before parsing anything
        timeout_keep_alive=5,  # an idle keep-alive connection is closed after this
        access_log=log_level == "debug",  # one line per request only when asked for
    )


def serve_forever(app: Any, config: ServeConfig, log_level: str = "info") -> None:
    """Serve until SIGINT / SIGTERM (uvicorn installs the handlers).

    The socket is bound here, so the line saying where the server listens names the real port
    also for `--port 0` (a free one), whatever uvicorn's log level."""
    import uvicorn  # lazy: uvicorn (the [serve] extra)

    settings = uvicorn_config(app, config, log_level)
    sock = settings.bind_socket()  # exits with uvicorn's message when the port is taken
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d/v1 (Ctrl-C stops)", f"[{host}]" if ":" in host else host, port)
    try:
        uvicorn.Server(settings).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """The app served on a thread: `with BackgroundServer(app) as server: httpx.get(server.url + "/health")`.

    Port 0 (the default) binds a free port, read back once the server listens."""

    def __init__(self, app: Any, config: ServeConfig | None = None, log_level: str = "warning"):
        import uvicorn  # lazy: uvicorn (the [serve] extra)

        config = config or ServeConfig(port=0)
        self.host = config.host
        self.server = uvicorn.Server(uvicorn_config(app, config, log_level))
        self.thread = threading.Thread(target=self.server.run, name="progresslm-serve", daemon=True)
        self.port = config.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout_s:g} s on {self.host}")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServerProcess:
    """`progresslm serve --host 127.0.0.1 --port 0 ...` in its own process; the port is read from the
    line it logs (`serve_forever`), readiness from GET /health.

        server = ServerProcess(["--backend", "constant"])
        server.wait_ready(60)
        ... httpx.get(server.url + "/health") ...
        code = server.stop()  # SIGINT, as Ctrl-C: 0 after a graceful shutdown
    """

    LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/v1")

    def __init__(self, serve_args: list[str]):
        command = [sys.executable, "-m", "progresslm.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--log-level", "warning", *serve_args]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.port: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            found = self.LISTENING.search(line)
            if found:
                self.port = int(found.group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout_s: float) -> None:
        """Return once /health answers 200; RuntimeError (with the server's output) if the process
        exits first or `timeout_s` passes (the process is then stopped)."""
        import httpx  # lazy: httpx costs ~0.1 s at import and --help imports this module

        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("progresslm serve exited:\n" + self.output)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"progresslm serve did not answer /health within {timeout_s:g} s:\n" + self.output)
            if self.port is not None:
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGINT (Ctrl-C) and the exit code; None if it had to be killed after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode
