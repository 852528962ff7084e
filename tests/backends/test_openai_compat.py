"""The OpenAI-compatible backend against a fake server on 127.0.0.1: request shape, auth, retries,
errors a user can act on, bounded concurrency, token usage."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.openai_compat import OpenAIBackend, backoff_delay
from progresslm.bench.format import read_official
from progresslm.images import ImageStore
from progresslm.prompts import build_prompt
from tests.backends.fake_openai_server import FakeServer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "official_sample" / "visual_same_view.jsonl"
KEY_ENV = "PROGRESSLM_TEST_OPENAI_KEY"


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """A tiny, distinct JPEG for every image the fixture samples name."""
    from PIL import Image

    for number, sample in enumerate(read_official(FIXTURE).samples):
        folder = tmp_path / sample.trajectory_id
        folder.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(sample.image_names()):
            Image.new("RGB", (4, 4), (number * 30 % 256, index * 40 % 256, 7)).save(folder / name)
    return tmp_path


def make_requests(image_root: Path, mode: str = "two-stage", n: int | None = None) -> list[Request]:
    store = ImageStore()
    requests = []
    for sample in read_official(FIXTURE).samples[:n]:
        prompt = build_prompt(sample, mode, image_root)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "data_url")))
    return requests


def make_backend(server: FakeServer, **overrides) -> OpenAIBackend:
    options = dict(model="fake-vlm", base_url=server.base_url, api_key_env=KEY_ENV, concurrency=2, max_retries=3)
    options.update(overrides)
    backend = OpenAIBackend(BackendOptions(**options), "two-stage")
    backend.sleep = lambda seconds: None  # no real waiting between retries
    return backend


def run(backend: OpenAIBackend, requests: list[Request]) -> dict:
    try:
        return dict(backend.generate(requests))
    finally:
        backend.close()


def test_request_body_carries_model_sampling_text_and_images_in_order(server, image_root, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    [request] = make_requests(image_root, n=1)
    backend = make_backend(server, temperature=0.7, top_p=0.9, max_new_tokens=77, seed=5)
    replies = run(backend, [request])

    assert replies[0].text == "42%"
    [recorded] = server.requests
    assert recorded.path == "/v1/chat/completions"
    body = recorded.body
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        "fake-vlm", 0.7, 0.9, 77, 5
    )
    system, user = body["messages"]
    assert system["role"] == "system" and isinstance(system["content"], str)
    assert system["content"] == request.prompt.messages[0]["content"][0]["text"]
    parts = user["content"]
    assert [p["type"] for p in parts] == [
        "image_url" if p["type"] == "image" else "text" for p in request.prompt.messages[1]["content"]
    ]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert urls == list(request.images) and len(urls) == len(request.prompt.images)
    for url, path in zip(urls, request.prompt.images):
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == path.read_bytes()
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts == [p["text"] for p in request.prompt.messages[1]["content"] if p["type"] == "text"]


def test_api_key_from_env_var_and_no_auth_header_when_unset(server, image_root, monkeypatch):
    requests = make_requests(image_root, n=1)
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    run(make_backend(server), requests)
    monkeypatch.delenv(KEY_ENV)
    run(make_backend(server), requests)
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert "authorization" not in server.requests[1].headers


@pytest.mark.parametrize("failure", ["429", "503", "close"])
def test_retries_transient_failures_then_succeeds(server, image_root, failure):
    server.fail_first, server.fail_with = 2, failure
    backend = make_backend(server, max_retries=2)
    waits: list[float] = []
    backend.sleep = waits.append
    replies = run(backend, make_requests(image_root, n=1))
    assert replies[0].text == "42%"
    assert server.calls == 3 and len(waits) == 2


def test_retry_after_header_is_honoured(server, image_root):
    server.fail_first, server.fail_with, server.retry_after = 1, "429", "7"
    backend = make_backend(server)
    waits: list[float] = []
    backend.sleep = waits.append
    run(backend, make_requests(image_root, n=1))
    assert waits == [7.0]


def test_backoff_doubles_from_half_a_second_and_is_capped():
    for retry in range(12):
        expected = min(30.0, 0.5 * 2**retry)
        assert expected / 2 <= backoff_delay(retry) <= expected


def test_gives_up_after_retries_with_a_message_naming_the_url(server, image_root):
    server.fail_first, server.fail_with, server.fail_message = 100, "503", "overloaded"
    backend = make_backend(server, max_retries=2)
    with pytest.raises(BackendError) as error:
        run(backend, make_requests(image_root, n=1))
    message = str(error.value)
    assert server.base_url + "/chat/completions" in message
    assert "3 time(s)" in message and "overloaded" in message and "--base-url" in message
    assert server.calls == 3


def test_unreachable_port_is_a_backend_error(image_root):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(
        BackendOptions(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, timeout_s=5), "direct"
    )
    backend.sleep = lambda seconds: None
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}.*server is running"):
        run(backend, make_requests(image_root, mode="direct", n=1))


def test_unknown_model_404_fails_at_once_with_the_server_message(server, image_root):
    server.fail_first, server.fail_with, server.fail_message = 1, "404", "model 'fake-vlm' does not exist"
    with pytest.raises(BackendError, match="HTTP 404.*model 'fake-vlm' does not exist"):
        run(make_backend(server), make_requests(image_root, n=1))
    assert server.calls == 1


def test_concurrency_is_bounded_but_used(server, image_root):
    server.delay_s = 0.05
    requests = make_requests(image_root) * 3
    replies = run(make_backend(server, concurrency=4), requests)
    assert sorted(replies) == list(range(len(requests)))
    assert 1 < server.max_in_flight <= 4


def test_usage_and_latency_are_kept_and_null_content_is_empty_text(server, image_root):
    replies = run(make_backend(server), make_requests(image_root, n=1))
    assert (replies[0].prompt_tokens, replies[0].completion_tokens) == (11, 3)
    assert replies[0].latency_s > 0
    server.reply, server.usage = None, None
    replies = run(make_backend(server), make_requests(image_root, n=1))
    assert replies[0].text == "" and replies[0].prompt_tokens is None


def test_missing_base_url_or_model_says_what_to_pass():
    with pytest.raises(BackendError, match="--base-url.*http://127.0.0.1:8000/v1"):
        OpenAIBackend(BackendOptions(model="m"), "direct")
    with pytest.raises(BackendError, match="--model"):
        OpenAIBackend(BackendOptions(base_url="http://127.0.0.1:8000/v1"), "direct")


def test_model_name_is_the_served_model(server):
    backend = make_backend(server)
    assert backend.model_name == "fake-vlm"
    backend.close()


def test_a_request_refused_for_its_content_is_recorded_and_the_run_goes_on(server, image_root):
    server.fail_first, server.fail_with, server.fail_message = 1, "400", "maximum context length exceeded"
    backend = make_backend(server, concurrency=1)
    replies = run(backend, make_requests(image_root))
    assert len(replies) == len(read_official(FIXTURE).samples)
    refused = [reply for reply in replies.values() if reply.error]
    assert len(refused) == 1 and "HTTP 400" in refused[0].error and "context length" in refused[0].error
    assert refused[0].text == ""


def test_a_bad_key_stops_the_run(server, image_root):
    server.fail_first, server.fail_with, server.fail_message = 99, "401", "invalid api key"
    with pytest.raises(BackendError, match="401"):
        run(make_backend(server), make_requests(image_root))


def test_replies_that_arrive_before_a_failure_are_still_yielded(server, image_root):
    server.down_after, server.fail_with = 3, "close"
    backend = make_backend(server, concurrency=1, max_retries=1)
    got = []
    with pytest.raises(BackendError, match="failed 2 time"):
        for index, _reply in backend.generate(make_requests(image_root)):
            got.append(index)
    assert len(got) == 3


def test_token_param_and_sampling_params_can_change(server, image_root):
    backend = make_backend(server, token_param="max_completion_tokens", sampling_params=False)
    body = backend.body(make_requests(image_root, n=1)[0])
    assert "max_completion_tokens" in body and "max_tokens" not in body
    assert not {"temperature", "top_p", "seed"} & set(body)
