"""Issue 25, item 4: a replica is a replica. Replies that are not chat completions (HTML with 200, truncated JSON, no
choices, wrong field types, too large), servers that drip bytes, and 429 / 503 with Retry-After each count as that
replica's failure: the request goes to a healthy replica, `--timeout` bounds the whole request, and the final error
says how each replica failed. Real HTTP servers on 127.0.0.1 that write whatever bytes a test scripts."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.openai_compat import OpenAIBackend, chat_completion
from progresslm.bench.format import read_official
from progresslm.images import ImageStore
from progresslm.prompts import build_prompt
from tests.backends.fake_openai_server import FakeServer
from tests.helpers import fixture, write_images

Script = Callable[[BaseHTTPRequestHandler], None]


class RawServer:
    """An HTTP server on 127.0.0.1 whose every POST is answered by `script(handler)`, which writes raw bytes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls = 0
        self.closing = threading.Event()  # set at the end: dripping scripts stop
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.calls += 1
                try:
                    server.script(self)
                except OSError:  # the client gave up on us: what a dripping server expects
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.closing = self.closing  # scripts see it as handler.server.closing
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> Script:
    def script(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(body)

    return script


def completion(content: str = "42%", **extra) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                       **extra}).encode()  # fmt: skip


@pytest.fixture(scope="module")
def requests(tmp_path_factory) -> list[Request]:
    root = tmp_path_factory.mktemp("images")
    samples = read_official(fixture("visual_same_view")).samples[:4]
    write_images(samples, root, size=8)
    store = ImageStore()
    out = []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", root)
        out.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "data_url")))
    return out


@pytest.fixture
def good():
    server = FakeServer(reply="77%").start()
    yield server
    server.stop()


def backend_for(*base_urls: str, **overrides) -> OpenAIBackend:
    options = dict(model="m", base_url=list(base_urls), api_key_env="PROGRESSLM_TEST_NO_KEY", concurrency=1,
                   max_retries=0, timeout_s=5.0)  # fmt: skip
    options.update(overrides)
    backend = OpenAIBackend(BackendOptions(**options), "two-stage")
    backend.waits = []
    backend.sleep = backend.waits.append  # record backoff waits instead of waiting
    return backend


def answers(backend: OpenAIBackend, requests: list[Request]) -> dict:
    try:
        return {i: reply.text for i, reply in backend.generate(requests)}
    finally:
        backend.close()


# ---- replies that are not chat completions -----------------------------------------------------------------------

BROKEN = {
    "html with 200": send(200, b"<html><body>502 Bad Gateway (nginx)</body></html>", "text/html"),
    "truncated json": send(200, completion()[:25]),
    "empty choices": send(200, b'{"choices": []}'),
    "no choices": send(200, b'{"id": "x", "object": "chat.completion"}'),
    "usage is a string": send(200, completion(usage="none")),
    "message is a string": send(200, b'{"choices": [{"message": "42%"}]}'),
    "content is a number": send(200, b'{"choices": [{"message": {"content": 42}}]}'),
    "token count is text": send(200, completion(usage={"prompt_tokens": "many"})),
    "a json list": send(200, b"[1, 2, 3]"),
    "not utf-8": send(200, b"\xff\xfe{\x00"),
    "empty body": send(200, b""),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_reply_that_is_not_a_chat_completion_fails_over_to_a_healthy_replica(kind, good, requests):
    bad = RawServer(BROKEN[kind])
    try:
        backend = backend_for(bad.base_url, good.base_url)
        assert answers(backend, requests) == dict.fromkeys(range(len(requests)), "77%")
        stats = {s["url"]: s for s in backend.run_stats()["replicas"]}
        assert bad.calls == 1 and stats[bad.url]["failures"] == 1  # tried once, then rested
        assert "not a chat completion" in stats[bad.url]["last_error"]
    finally:
        bad.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
# bodies shaped like a completion, with any value in any field: the cases a lenient server gets wrong
shaped = st.fixed_dictionaries({}, optional={
    "choices": json_values | st.lists(st.fixed_dictionaries({}, optional={
        "message": json_values | st.fixed_dictionaries({}, optional={"content": json_values})}), max_size=2),
    "usage": json_values | st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens"]), json_values),
})


@given(st.one_of(shaped.map(lambda v: json.dumps(v).encode()), json_values.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=64)))
@settings(max_examples=300, deadline=None)
def test_any_body_is_a_chat_completion_or_a_value_error(body):
    try:
        text, prompt_tokens, completion_tokens = chat_completion(body)
    except ValueError:
        return
    assert isinstance(text, str)
    assert all(n is None or (type(n) is int and n >= 0) for n in (prompt_tokens, completion_tokens))


@given(body=shaped.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whatever_a_bad_replica_sends_the_healthy_one_answers(body, good, requests):
    bad = RawServer(send(200, body))
    try:
        backend = backend_for(bad.base_url, good.base_url)
        got = answers(backend, requests[:2])
        assert len(got) == 2  # never an exception: a body that does not parse fails over
        valid = True
        try:
            chat_completion(body)
        except ValueError:
            valid = False
        if not valid:
            assert set(got.values()) == {"77%"}
    finally:
        bad.stop()


# ---- size and time ----------------------------------------------------------------------------------------------


def test_a_reply_past_the_size_cap_is_that_replicas_failure_not_memory(good, requests):
    big = completion("9" * 5000)

    def unsized(h: BaseHTTPRequestHandler) -> None:  # no Content-Length: the body ends when the connection does
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")
        h.end_headers()
        for start in range(0, len(big), 500):
            h.wfile.write(big[start:start + 500])

    for script in (send(200, big), unsized):
        bad = RawServer(script)
        try:
            backend = backend_for(bad.base_url, good.base_url)
            backend.max_reply_bytes = 1000
            assert set(answers(backend, requests).values()) == {"77%"}
            error = {s["url"]: s for s in backend.run_stats()["replicas"]}[bad.url]["last_error"]
            assert "more than" in error and "1,000" in error
        finally:
            bad.stop()


def flood(total: int, how: str, sent: list[int]) -> Script:
    """A chat completion of `total` bytes, 1 MiB a write, sent `how` (unsized / chunked / gzip); `sent` gets the
    bytes written before the client hung up."""
    head, tail = b'{"choices": [{"message": {"content": "', b'"}}]}'

    def blocks():
        yield head
        for _ in range(total // 2**20):
            yield b"9" * 2**20
        yield tail

    def script(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding" if how == "chunked" else "Connection", "chunked" if how == "chunked"
                      else "close")  # fmt: skip
        parts = blocks()
        if how == "gzip":
            h.send_header("Content-Encoding", "gzip")
            packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            parts = (packer.compress(block) for block in blocks())
        h.end_headers()
        count = 0
        try:
            for part in parts:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if how == "chunked" else part)
                count += len(part)
            if how == "chunked":
                h.wfile.write(b"0\r\n\r\n")
        finally:
            sent.append(count)

    return script


@pytest.mark.parametrize("how", ["unsized", "chunked", "gzip"])
def test_a_flood_is_cut_off_at_the_cap_not_read_to_its_end(how, good, requests):
    """A 256 MB reply (or a gzip bomb that decodes to it) with no Content-Length to refuse it by: the client stops
    reading once the cap is passed, so the replica gets to send the cap plus what socket buffers hold, not 256 MB;
    the request fails over, and with no other replica the error says why. What the client allocates at the peak is
    measured too, since a gzip bomb is small on the wire."""
    total, cap = 256 * 2**20, 2**20
    sent: list[int] = []
    bad = RawServer(flood(total, how, sent))
    try:
        backend = backend_for(bad.base_url, good.base_url)
        backend.max_reply_bytes = cap
        assert answers(backend, requests[:1]) == {0: "77%"}
        alone = backend_for(bad.base_url)
        alone.max_reply_bytes = cap
        tracemalloc.start()
        try:
            with pytest.raises(BackendError, match="the reply passed 1,048,576 bytes, more than a chat completion may"):
                answers(alone, requests[:1])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # what the request held at most: the cap, a decoded chunk or two, the stub's 1 MiB blocks (it read 256 MB
        # into a bytes object when the body was read whole)
        assert peak < 48 * 2**20, f"{peak:,} bytes allocated at the peak for a reply capped at {cap:,}"
        deadline = time.monotonic() + 5
        while len(sent) < 2 and time.monotonic() < deadline:  # the stub notices the hang-up on its next write
            time.sleep(0.01)
        assert len(sent) == 2, "the stub was still sending 5 s after the client gave up"
        assert max(sent) < cap + 32 * 2**20, f"the client read {max(sent):,} bytes of a {total:,}-byte reply"
    finally:
        bad.stop()


def drip(head: bytes, body: bytes, every_s: float, headers_too: bool) -> Callable:
    def script(h: BaseHTTPRequestHandler) -> None:
        slow = (head + body) if headers_too else body
        if not headers_too:
            h.wfile.write(head)
            h.wfile.flush()
        for byte in slow:
            if h.server.closing.wait(every_s):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    return script


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "status-line"])
def test_a_replica_that_drips_bytes_is_failed_over_within_the_timeout(headers_too, good, requests):
    body = completion("13%")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    # one byte each 1.2 s: every read returns before httpx's per-read timeout of 1.5 s, so only a limit on the
    # whole request stops it (it held a request 46 s with --timeout 3)
    bad = RawServer(drip(head, body, 1.2, headers_too))
    try:
        backend = backend_for(bad.base_url, good.base_url, timeout_s=1.5)
        started = time.monotonic()
        assert answers(backend, requests[:1]) == {0: "77%"}
        took = time.monotonic() - started
        assert took < 2.3, f"failed over after {took:.1f} s with --timeout 1.5"
        error = {s["url"]: s for s in backend.run_stats()["replicas"]}[bad.url]["last_error"]
        assert "timed out" in error and "--timeout 1.5 s" in error
    finally:
        bad.stop()


# ---- rate limits and Retry-After --------------------------------------------------------------------------------


def test_429_goes_to_an_idle_replica_first_and_the_limited_one_rests_as_long_as_it_asked(good, requests):
    limited = RawServer(send(429, b'{"error": {"message": "rate limited"}}', headers={"Retry-After": "7"}))
    try:
        backend = backend_for(limited.base_url, good.base_url)
        assert set(answers(backend, requests).values()) == {"77%"}
        assert limited.calls == 1  # resting for its 7 s: the other requests went to the idle replica
        assert backend.waits == []  # and nobody waited, since a replica was free
        rest = backend.replicas.replicas[0].down_until - time.monotonic()
        assert 5.0 < rest <= 7.0
    finally:
        limited.stop()


def test_503_with_retry_after_rests_that_long_not_the_whole_cool_down(good, requests):
    busy = RawServer(send(503, b"overloaded", "text/plain", headers={"Retry-After": "2"}))
    try:
        backend = backend_for(busy.base_url, good.base_url)
        assert set(answers(backend, requests).values()) == {"77%"}
        rest = backend.replicas.replicas[0].down_until - time.monotonic()
        assert 0.0 < rest <= 2.0  # the server's own word, not 30 s
    finally:
        busy.stop()


def test_every_replica_failing_names_how_each_failed_never_no_error(requests):
    servers = [RawServer(send(429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": "0"})),
               RawServer(send(200, b"<html>login</html>", "text/html")),
               RawServer(send(200, completion(usage="none")))]  # fmt: skip
    try:
        backend = backend_for(*(s.base_url for s in servers), max_retries=1)
        with pytest.raises(BackendError) as error:
            answers(backend, requests[:1])
        message = str(error.value)
        assert "no error" not in message
        assert f"{servers[0].url}: HTTP 429: slow down" in message
        assert f"{servers[1].url}: HTTP 200 (text/html) but not a chat completion: not JSON" in message
        assert f"{servers[2].url}: HTTP 200 (application/json) but not a chat completion: usage is 'none'" in message
        assert backend.waits == [0.0]  # every replica failed once: then one backoff, as the server asked
    finally:
        for server in servers:
            server.stop()
