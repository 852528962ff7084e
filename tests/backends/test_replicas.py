"""The openai backend across several replicas of one model: least outstanding work, per-replica concurrency,
failover when a replica dies, a clear error when every replica is down, and one URL exactly as before.

The pool is checked on its own with a hand-driven clock; the backend against fake servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.openai_compat import OpenAIBackend, replica_urls
from progresslm.backends.replicas import Cancelled, ReplicaPool
from progresslm.bench.format import load_bench
from progresslm.cli.main import main
from progresslm.images import ImageStore
from progresslm.prompts import build_prompt
from tests.backends.fake_openai_server import FakeServer


def reply_from_request(body: dict) -> str:
    """A reply that depends on the request only, the same whichever replica answers it."""
    digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).digest()
    return f"{digest[0] % 101}%"


@pytest.fixture
def servers(request):
    """Three fake replicas (their settings are changed by each test before it sends anything)."""
    fakes = [FakeServer(reply_for=reply_from_request).start() for _ in range(3)]
    yield fakes
    for fake in fakes:
        fake.stop()


@pytest.fixture
def bench(tmp_path: Path) -> tuple[list[str], Path]:
    files = [str(fixture(name)) for name in BENCH_FILES]
    write_images(load_bench(files).samples, tmp_path / "images", size=8)
    return files, tmp_path / "images"


def make_requests(bench: tuple[list[str], Path], draws: int = 1) -> list[Request]:
    files, image_root = bench
    store = ImageStore()
    requests = []
    for sample in load_bench(files).samples:
        prompt = build_prompt(sample, "two-stage", image_root)
        images = store.encode_all(prompt.images, "data_url")
        requests += [Request(sample.uid, draw, prompt, sample, images) for draw in range(draws)]
    return requests


def make_backend(urls: list[str] | str, **overrides) -> OpenAIBackend:
    options = dict(model="fake-vlm", base_url=urls, api_key_env="PROGRESSLM_TEST_NO_KEY", concurrency=2,
                   max_retries=2)  # fmt: skip
    options.update(overrides)
    backend = OpenAIBackend(BackendOptions(**options), "two-stage")
    backend.sleep = lambda seconds: None  # no real waiting between backed-off retries
    return backend


def run(backend: OpenAIBackend, requests: list[Request]) -> dict:
    try:
        return dict(backend.generate(requests))
    finally:
        backend.close()


def no_worker_threads_left(timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(t.name.startswith("progresslm-openai") for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---- the pool, on a clock the test moves --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def acquire_blocks(pool: ReplicaPool) -> bool:
    """Whether `acquire` waits (then stops it); a replica it got instead is released again."""
    stop = threading.Event()
    got = []

    def take() -> None:
        try:
            got.append(pool.acquire(stop))
        except Cancelled:
            pass

    worker = threading.Thread(target=take)
    worker.start()
    worker.join(0.2)
    stop.set()
    pool.wake()
    worker.join(5)
    assert not worker.is_alive()
    for replica in got:
        pool.release(replica, latency_s=0.0)
    return not got


def test_next_request_goes_to_the_least_busy_replica_ties_in_turn():
    pool = ReplicaPool(["a", "b", "c"], concurrency=2, clock=Clock())
    first = [pool.acquire().url for _ in range(3)]
    assert first == ["a", "b", "c"]  # all idle: in turn
    b = pool.replicas[1]
    pool.release(b, latency_s=0.1)
    assert pool.acquire().url == "b"  # the only one with one in flight less
    assert [pool.acquire().url for _ in range(2)] == ["c", "a"]  # tied again: in turn from after b
    assert pool.acquire().url == "b"
    assert [r.in_flight for r in pool.replicas] == [2, 2, 2]
    assert acquire_blocks(pool)  # every replica holds --concurrency: the next request waits


def test_a_failed_replica_rests_then_is_probed_one_request_at_a_time():
    clock = Clock()
    pool = ReplicaPool(["a", "b"], concurrency=2, cool_down_s=30.0, clock=clock)
    a = pool.acquire()
    pool.release(a, error="connection failed", fault=True)
    assert [pool.acquire().url for _ in range(2)] == ["b", "b"]
    assert acquire_blocks(pool)  # b is full and a is down: wait, do not send to a
    clock.now += 30.0
    assert pool.acquire().url == "a"  # back after its cool-down, as a probe ...
    assert acquire_blocks(pool)  # ... and only one request at a time until it answers
    pool.release(a, latency_s=0.5)
    assert pool.acquire().url == "a"  # answered: its full concurrency again
    stats = pool.stats()
    assert (stats[0].requests, stats[0].answered, stats[0].failures) == (3, 1, 1)
    assert stats[0].mean_latency_s == 0.5 and stats[0].last_error == "connection failed"


def test_when_every_replica_is_down_requests_still_go_out():
    clock = Clock()
    pool = ReplicaPool(["a", "b"], concurrency=1, clock=clock)
    for replica in pool.replicas:
        pool.acquire()
        pool.release(replica, error="HTTP 503: overloaded", fault=True)
    assert not pool.any_up()
    assert {pool.acquire().url, pool.acquire().url} == {"a", "b"}
    assert "a: HTTP 503: overloaded; b: HTTP 503: overloaded" == pool.last_errors()


def test_rate_limits_and_refusals_do_not_mark_a_replica_down():
    pool = ReplicaPool(["a", "b"], concurrency=1, clock=Clock())
    a = pool.acquire()
    pool.release(a, error="HTTP 429: slow down", fault=False)
    assert pool.acquire().url == "b" and pool.acquire().url == "a"  # a is still in the rotation


# ---- the backend against fake servers -----------------------------------------------------------------


def test_requests_are_spread_over_every_replica_with_concurrency_per_replica(servers, bench):
    for fake in servers:
        fake.delay_s = 0.05
    requests = make_requests(bench)
    backend = make_backend([fake.base_url for fake in servers], concurrency=2)
    assert backend.workers == 6
    replies = run(backend, requests)
    assert sorted(replies) == list(range(len(requests)))
    assert sum(fake.calls for fake in servers) == len(requests)  # nothing sent twice
    share = len(requests) / 3
    assert all(share / 2 <= fake.calls <= share * 1.5 for fake in servers), [fake.calls for fake in servers]
    assert [fake.max_in_flight for fake in servers] == [2, 2, 2]  # 3 x --concurrency in flight, 2 on each
    stats = backend.run_stats()["replicas"]
    assert [s["answered"] for s in stats] == [fake.calls for fake in servers]
    assert all(s["mean_latency_s"] >= 0.05 and s["failures"] == 0 for s in stats)
    assert no_worker_threads_left()


def test_a_slow_replica_gets_fewer_requests(servers, bench):
    slow, fast = servers[0], servers[1]
    slow.delay_s, fast.delay_s = 0.25, 0.01
    requests = make_requests(bench)
    replies = run(make_backend([slow.base_url, fast.base_url], concurrency=1), requests)
    assert len(replies) == len(requests)
    assert slow.calls * 3 < fast.calls, (slow.calls, fast.calls)


def eval_argv(bench: tuple[list[str], Path], out: Path, *base_urls: str) -> list[str]:
    files, image_root = bench
    return ["eval", "--bench", *files, "--image-root", str(image_root), "--backend", "openai", "--model", "m",
            "--base-url", *base_urls, "--concurrency", "2", "--max-retries", "0", "--out", str(out), "--quiet",
            "--no-plots", "--no-floors", "--bootstrap", "0"]  # fmt: skip


def saved_results(out: Path) -> dict:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(r["uid"], r["draw"]): (r["reply"], r["status"], r["score"]) for r in records}


def test_a_replica_killed_mid_run_loses_nothing_and_the_results_equal_a_single_replica_run(servers, bench, tmp_path):
    assert main(eval_argv(bench, tmp_path / "one", servers[0].base_url)) == 0
    single = saved_results(tmp_path / "one")
    config = json.loads((tmp_path / "one" / "config.json").read_text())
    assert config["options"]["base_url"] == servers[0].base_url  # one URL is recorded as it always was

    for fake in servers:
        fake.calls, fake.delay_s = 0, 0.02
    dying = servers[1]
    dying.down_after, dying.fail_with = 4, "close"  # after 4 answers every call drops the connection
    out = tmp_path / "three"
    assert main(eval_argv(bench, out, *(fake.base_url for fake in servers))) == 0

    assert saved_results(out) == single and len(single) == len(load_bench(bench[0]).samples)
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["base_url"] == [fake.base_url for fake in servers]
    stats = json.loads((out / "backend_stats.json").read_text())["replicas"]
    assert [s["url"] for s in stats] == [fake.base_url + "/chat/completions" for fake in servers]
    assert sum(s["answered"] for s in stats) == len(single)
    dead = stats[1]
    assert dead["answered"] == 4 and dead["failures"] >= 1 and "connection failed" in dead["last_error"]
    assert dead["requests"] <= 4 + 2  # once down, it got nothing more than what was in flight
    assert stats[0]["failures"] == stats[2]["failures"] == 0


def test_every_replica_down_is_a_clear_error_naming_each_url(servers, bench):
    overloaded, dropping, gone = servers
    overloaded.fail_first, overloaded.fail_message = 10**6, "overloaded"
    dropping.fail_first, dropping.fail_with = 10**6, "close"
    gone.stop()  # nothing listens there: connection refused
    backend = make_backend([fake.base_url for fake in servers], max_retries=1)
    with pytest.raises(BackendError) as error:
        run(backend, make_requests(bench)[:4])
    message = str(error.value)
    assert "any of the 3 replicas" in message
    assert f"{overloaded.base_url}/chat/completions: HTTP 503: overloaded" in message
    assert f"{dropping.base_url}/chat/completions: connection failed" in message
    assert f"{gone.base_url}/chat/completions: connection failed (ConnectError" in message
    assert no_worker_threads_left()  # workers waiting for a replica woke up and left


def test_a_request_refused_for_its_content_is_not_retried_on_another_replica(servers, bench):
    refusing, fine = servers[0], servers[1]
    refusing.fail_first, refusing.fail_with, refusing.fail_message = 10**6, "400", "context too long"
    requests = make_requests(bench)
    replies = run(make_backend([refusing.base_url, fine.base_url]), requests)
    assert refusing.calls + fine.calls == len(requests) and refusing.calls > 0
    assert sum(reply.error is not None for reply in replies.values()) == refusing.calls


def test_a_bad_key_on_one_replica_stops_the_run(servers, bench):
    servers[0].fail_first, servers[0].fail_with, servers[0].fail_message = 10**6, "401", "invalid api key"
    with pytest.raises(BackendError, match="HTTP 401.*invalid api key"):
        run(make_backend([fake.base_url for fake in servers[:2]]), make_requests(bench))


def test_one_url_behaves_as_before(servers, bench):
    server = servers[0]
    server.fail_first, server.delay_s = 2, 0.02  # 503 twice: retried on the same server with backoff
    backend = make_backend(server.base_url, concurrency=3)
    waits: list[float] = []
    backend.sleep = waits.append
    assert backend.urls == [server.base_url + "/chat/completions"] and backend.workers == 3
    requests = make_requests(bench)
    replies = run(backend, requests)
    assert len(replies) == len(requests) and server.calls == len(requests) + 2
    assert len(waits) == 2 and server.max_in_flight <= 3
    assert [s["requests"] for s in backend.run_stats()["replicas"]] == [len(requests) + 2]


def test_base_urls_are_checked_entry_by_entry():
    assert replica_urls("http://a:1/v1,http://b:1/v1/chat/completions") == [
        "http://a:1/v1/chat/completions", "http://b:1/v1/chat/completions"
    ]
    with pytest.raises(BackendError, match="entry 2 .* is empty"):
        replica_urls("http://a:1/v1,,http://b:1/v1")
    with pytest.raises(BackendError, match="'http://a:1/v1/' is given twice"):
        replica_urls(["http://a:1/v1", "http://a:1/v1/"])
    with pytest.raises(BackendError, match="'h2:8000/v1' must start with http://"):
        replica_urls(["http://a:1/v1", "h2:8000/v1"])
