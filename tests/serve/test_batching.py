"""The queue and its worker: concurrent requests share backend calls, settings never mix, one bad
request does not sink its batch, and shutdown answers everything queued."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request
from progresslm.serve import ServeConfig, create_app
from progresslm.serve.batcher import Batcher, Settings, ShuttingDown
from progresslm.serve.runner import BackgroundServer
from progresslm.types import Demo, Modality, Sample

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")


class Recorder(Backend):
    """Echoes each uid with the temperature it was asked with; slow enough for a queue to form."""

    def __init__(self, options: BackendOptions | None = None, mode: str = "two-stage", delay_s: float = 0.02):
        super().__init__(options or BackendOptions(), mode)
        self.delay_s = delay_s
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def generate(self, requests):
        self.threads.add(threading.current_thread().name)
        uids = [r.uid for r in requests]
        self.calls.append(uids)
        if "bad" in uids:
            raise BackendError("cannot answer 'bad'")
        time.sleep(self.delay_s)
        for i, uid in enumerate(uids):
            yield i, Reply(text=f"{uid}@{self.options.temperature:g}", completion_tokens=1)


def request(uid: str) -> Request:
    sample = Sample(uid, "t", "g", Demo(Modality.TEXT, ("a",), 1), "o.png", None, None, labelled=False)
    return Request(uid, 0, None, sample)  # type: ignore[arg-type]


GREEDY = Settings("two-stage", 0.0, 1.0, 16, 0)


def test_concurrent_requests_are_batched_on_one_thread():
    backend = Recorder()
    batcher = Batcher(backend, max_batch=8, wait_s=0.01)
    with ThreadPoolExecutor(16) as pool:
        futures = list(pool.map(lambda i: batcher.submit([request(f"r{i}")], GREEDY)[0], range(32)))
    assert [f.result(timeout=10).text for f in futures] == [f"r{i}@0" for i in range(32)]
    batcher.close()
    assert batcher.stats.largest > 1 and batcher.stats.requests == 32
    assert max(len(call) for call in backend.calls) <= 8
    assert backend.threads == {"progresslm-serve-worker"}


def test_settings_never_share_a_batch_and_greedy_ignores_seed():
    backend = Recorder(delay_s=0.05)
    batcher = Batcher(backend, max_batch=8, wait_s=0.2)
    warm = batcher.submit([request("first")], GREEDY)
    hot = batcher.submit([request(f"hot{i}") for i in range(3)], Settings("two-stage", 0.7, 1.0, 16, 0))
    greedy = batcher.submit([request("a")], Settings("two-stage", 0.0, 0.9, 16, 5))  # same as GREEDY once normalised
    greedy += batcher.submit([request("b")], GREEDY)
    assert [f.result(10).text for f in warm + hot + greedy] == ["first@0"] + [f"hot{i}@0.7" for i in range(3)] + ["a@0", "b@0"]
    batcher.close()
    assert sorted(backend.calls) == [["first", "a", "b"], ["hot0", "hot1", "hot2"]]


def test_one_bad_request_fails_alone():
    backend = Recorder(delay_s=0.05)
    batcher = Batcher(backend, max_batch=8, wait_s=0.05)
    futures = batcher.submit([request("x"), request("bad"), request("y")], GREEDY)
    assert futures[0].result(10).text == "x@0" and futures[2].result(10).text == "y@0"
    with pytest.raises(BackendError, match="bad"):
        futures[1].result(10)
    batcher.close()


def test_shutdown_drains_then_refuses():
    batcher = Batcher(Recorder(delay_s=0.05), max_batch=2, wait_s=0.0)
    futures = batcher.submit([request(f"q{i}") for i in range(6)], GREEDY)
    batcher.close(drain_timeout_s=10)
    assert [f.result(0).text for f in futures] == [f"q{i}@0" for i in range(6)]
    with pytest.raises(ShuttingDown):
        batcher.submit([request("late")], GREEDY)
    cut = Batcher(Recorder(delay_s=0.2), max_batch=1, wait_s=0.0)
    futures = cut.submit([request(f"c{i}") for i in range(5)], GREEDY)
    cut.close(drain_timeout_s=0.1)  # too short for all five: the rest are cancelled, not left hanging
    outcomes = [type(f.exception(5)).__name__ if f.exception(5) else "ok" for f in futures]
    assert "ShuttingDown" in outcomes and outcomes[0] == "ok"


def test_http_clients_in_parallel_get_batched():
    backend = Recorder(delay_s=0.03)
    app = create_app(ServeConfig(backend="constant", max_batch=8, batch_wait_ms=10, port=0), backend)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    with BackgroundServer(app) as server, httpx.Client(timeout=30) as http:
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda i: http.post(f"{server.url}/v1/chat/completions", json={**body, "seed": i}), range(24)))
        health = http.get(f"{server.url}/health").json()
    assert all(r.status_code == 200 for r in replies)
    assert health["batching"]["largest_batch"] > 1 and health["batching"]["requests"] == 24


def test_stopping_the_server_finishes_requests_in_flight():
    backend = Recorder(delay_s=0.3)
    app = create_app(ServeConfig(backend="constant", max_batch=2, batch_wait_ms=0, port=0), backend)
    server = BackgroundServer(app).start()
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(http.post, f"{server.url}/v1/chat/completions", json={**body, "seed": i}) for i in range(6)]
        deadline = time.monotonic() + 10
        while app.state.serve.batcher.stats.batches == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()  # what SIGINT does: stop listening, wait for requests in flight, then drain the queue
        replies = [future.result() for future in pending]
    assert [reply.status_code for reply in replies] == [200] * 6
    assert not server.thread.is_alive() and app.state.serve.batcher.stats.requests == 6
