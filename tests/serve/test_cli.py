"""`progresslm serve`: flags to settings, bad flags refused, and a real process that stops cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from progresslm.cli.main import build_parser, main
from progresslm.cli.serve import config_from_args

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")


def test_flags_become_settings():
    args = build_parser().parse_args(["serve", "--backend", "hf", "--model", "m", "--port", "9000", "--batch-size", "4",
                                      "--batch-wait-ms", "2", "--max-body-mb", "5", "--temperature", "0.5",
                                      "--session-ttl", "30"])  # fmt: skip
    config = config_from_args(args)
    assert (config.backend, config.port, config.max_batch, config.batch_wait_ms, config.max_body_mb) == ("hf", 9000, 4, 2, 5)
    assert config.options.model == "m" and config.options.temperature == 0.5 and config.session_ttl_s == 30
    assert config.host == "127.0.0.1" and config.mode == "two-stage"
    assert config.served_model_names == ()
    named = config_from_args(build_parser().parse_args(["serve", "--served-model-name", "progress-a", "progress-b"]))
    assert named.served_model_names == ("progress-a", "progress-b")


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be greater than 0"),
    (["--mode", "cot"], "--mode 'cot'"),
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--backend", "hf", "--model", "/no/such/model"], "does not exist"),
])  # fmt: skip
def test_bad_flags_fail_before_listening(argv, message, capsys):
    assert main(["serve", *argv]) in (1, 2)
    assert message in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # a fresh interpreter importing FastAPI: seconds; the in-process shutdown test is in the fast run
def test_the_command_serves_and_stops_on_sigint():
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "progresslm.cli.main", "serve", "--backend", "constant",
                                "--port", str(port), "--log-level", "warning"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            time.sleep(0.2)
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30), range(8)))
        assert all(reply.status_code == 200 for reply in replies)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
