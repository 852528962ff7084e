"""Malformed requests of every kind, sent to the app under uvicorn on a loopback port, get a 4xx with a
JSON message saying what and where, and the server stays healthy afterwards."""

from __future__ import annotations

import base64

import httpx
import pytest

from progresslm.serve import ServeConfig, create_app
from progresslm.serve.runner import BackgroundServer
from tests.serve.payloads import b64, data_url, png_bytes

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")

LIMITS = {"max_body_mb": 0.5, "max_images": 4, "max_image_pixels": 64 * 64, "max_frames_per_call": 3,
          "max_new_tokens_cap": 100}  # fmt: skip
DEMO = {"goal": "g", "demo_steps": ["a", "b"]}


def chat(*parts, **fields) -> dict:
    content = list(parts) if parts else "hello"
    return {"model": "m", "messages": [{"role": "user", "content": content}], **fields}


def image(url) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def truncated_png() -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(9)[:40]).decode()


# (method, path, keyword arguments for the client, expected status)
CASES = [
    ("post", "/v1/chat/completions", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
    ("post", "/v1/chat/completions", {"content": b"plain words"}, 400),
    ("post", "/v1/chat/completions", {"json": [1, 2]}, 400),
    ("post", "/v1/chat/completions", {"json": "messages"}, 400),
    ("post", "/v1/chat/completions", {"json": {"model": "m"}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": []}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": "hello"}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": ["hello"]}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": [{"role": "robot", "content": "x"}]}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": [{"content": "x"}]}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": [{"role": "user"}]}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": 42}]}}, 400),
    ("post", "/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": []}]}}, 400),
    ("post", "/v1/chat/completions", {"json": chat("text")}, 400),
    ("post", "/v1/chat/completions", {"json": chat({"type": "audio", "audio": "x"})}, 400),
    ("post", "/v1/chat/completions", {"json": chat({"type": "text", "text": ["x"]})}, 400),
    ("post", "/v1/chat/completions", {"json": chat({"type": "image_url", "image_url": {}})}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image(12345))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("http://example.com/a.png"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("https://example.com/a.png"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("file:///etc/passwd"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("/etc/passwd"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("data:image/png,rawbytes"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("data:image/png;base64,@@not base64@@"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("data:image/png;base64," + base64.b64encode(b"hi").decode()))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image("data:image/png;base64,"))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image(truncated_png()))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(image(data_url(9, size=100)))}, 400),
    ("post", "/v1/chat/completions", {"json": chat(*[image(data_url(k)) for k in range(5)])}, 400),
    ("post", "/v1/chat/completions", {"json": chat(temperature="hot")}, 400),
    ("post", "/v1/chat/completions", {"json": chat(temperature=-1)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(top_p=0)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(max_tokens=0)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(max_tokens="10")}, 400),
    ("post", "/v1/chat/completions", {"json": chat(max_tokens=1000)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(n=0)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(n=100)}, 400),
    ("post", "/v1/chat/completions", {"json": chat(stream="yes")}, 400),
    ("post", "/v1/chat/completions", {"json": chat(seed="x")}, 400),
    ("post", "/v1/chat/completions",
     {"json": {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}}, 400),
    ("post", "/v1/chat/completions", {"content": b"x" * 600_000, "headers": {"content-type": "application/json"}}, 413),
    ("post", "/v1/chat/completions", {"content": iter([b"{" + b" " * 300_000] * 3)}, 413),  # chunked, no length
    ("put", "/v1/chat/completions", {"json": chat()}, 405),
    ("post", "/v1/progress", {"json": {"demo_steps": ["a", "b"], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "goal": 7, "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "demo_images": [b64(1), b64(2)], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "demo_images": [b64(1)], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "demo_images": ["%%%", b64(1)], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "demo_images": [b64(k) for k in range(6)], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": DEMO}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": "http://example.com/x.jpg"}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": "/etc/hosts"}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": "C:\\images\\x.png"}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": base64.b64encode(b"not an image").decode()}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": 12}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "demo_steps": ["a", 2], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {"goal": "g", "demo_steps": ["a", "  "], "observation": b64(1)}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": b64(1), "colour": "red"}}, 400),
    ("post", "/v1/progress", {"json": {**DEMO, "observation": b64(1), "mode": "cot"}}, 400),
    ("post", "/v1/progress", {"content": b"goal=g", "headers": {"content-type": "text/plain"}}, 415),
    ("post", "/v1/progress", {"content": b"{]", "headers": {"content-type": "application/json"}}, 400),
    ("post", "/v1/progress", {"data": {"goal": "g", "demo_steps": ["a", "b"]},
                              "files": [("picture", ("o.png", png_bytes(1), "image/png"))]}, 400),
    ("post", "/v1/progress", {"data": {"goal": "g", "demo_steps": ["a", "b"]},
                              "files": [("observation", ("o.png", b"not a png", "image/png"))]}, 400),
    ("post", "/v1/progress", {"data": {"goal": "g", "demo_steps": ["a", "b"]}, "files": []}, 400),
    ("post", "/v1/sessions", {"json": {**DEMO, "monitor": {"patience": 1}}}, 400),
    ("post", "/v1/sessions", {"json": {**DEMO, "monitor": {"done_frames": "two"}}}, 400),
    ("post", "/v1/sessions", {"json": {**DEMO, "monitor": {"min_gain": 5.0}}}, 400),
    ("post", "/v1/sessions", {"json": {**DEMO, "monitor": []}}, 400),
    ("post", "/v1/sessions/sess-nope/frames", {"json": {"frames": [b64(1)]}}, 404),
    ("get", "/v1/sessions/sess-nope", {}, 404),
    ("delete", "/v1/sessions/sess-nope", {}, 404),
    ("get", "/v1/nothing-here", {}, 404),
]
SESSION_CASES = [
    ({"json": {"frames": []}}, 400),
    ({"json": {"frames": "abc"}}, 400),
    ({"json": {"frames": ["###"]}}, 400),
    ({"json": {"frames": [b64(1)], "timestamps": [0.0, 1.0]}}, 400),
    ({"json": {"frames": [b64(1)], "timestamps": ["noon"]}}, 400),
    ({"json": {"frames": [b64(1)] * 4}}, 400),
    ({"json": {"frames": [data_url(1, size=200)]}}, 400),
    ({"json": {"frame": [b64(1)]}}, 400),
    ({"data": {"timestamps": ["x"]}, "files": [("frames", ("f.png", png_bytes(1), "image/png"))]}, 400),
]


@pytest.fixture(scope="module")
def served():
    """The app under uvicorn on a free loopback port (the real HTTP stack), and a client for it."""
    app = create_app(ServeConfig(backend="constant", port=0, **LIMITS))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, http


@pytest.fixture
def client(served):
    return served[1]


def check_error(reply: httpx.Response, status: int, label: str) -> None:
    assert reply.status_code == status, f"{label}: {reply.status_code} {reply.text[:300]}"
    error = reply.json()["error"]
    assert isinstance(error["message"], str) and len(error["message"]) > 10, label


def test_malformed_requests_are_4xx_and_the_server_stays_healthy(served):
    server, client = served
    assert len(CASES) + len(SESSION_CASES) >= 50
    for number, (method, path, kwargs, status) in enumerate(CASES):
        reply = getattr(client, method)(path, **kwargs) if method in ("get", "delete") else client.request(method.upper(), path, **kwargs)
        check_error(reply, status, f"case {number} {method} {path}")
    session = client.post("/v1/sessions", json=DEMO).json()["id"]
    for number, (kwargs, status) in enumerate(SESSION_CASES):
        check_error(client.post(f"/v1/sessions/{session}/frames", **kwargs), status, f"session case {number}")
    assert client.get(f"/v1/sessions/{session}").json()["summary"]["frames"] == 0  # nothing half-applied
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queue_depth"] == 0 and health["sessions"] == 1
    assert server.thread.is_alive() and server.server.server_state.total_requests > len(CASES) + len(SESSION_CASES)
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert client.post("/v1/progress", json={**DEMO, "observation": b64(3)}).json()["progress"] == 50.0
    frames = client.post(f"/v1/sessions/{session}/frames", json={"frames": [b64(1)]})
    assert frames.status_code == 200 and frames.json()["summary"]["frames"] == 1


def test_where_is_named(client):
    reply = client.post("/v1/chat/completions", json=chat(image("data:image/png;base64,@@")))
    assert reply.json()["error"]["param"] == "messages[0].content[0].image_url.url"
    assert reply.json()["error"]["message"].startswith("messages[0].content[0].image_url.url: not valid base64")
    reply = client.post("/v1/chat/completions", json=chat(temperature="hot"))
    assert reply.json()["error"]["param"] == "temperature"


def test_oversized_bodies_over_the_network():
    app = create_app(ServeConfig(backend="constant", port=0, max_body_mb=0.5))
    with BackgroundServer(app) as server, httpx.Client(timeout=30) as http:
        url = f"{server.url}/v1/chat/completions"
        declared = http.post(url, content=b"x" * 1_000_000, headers={"content-type": "application/json"})
        check_error(declared, 413, "declared length")
        chunked = http.post(url, content=iter([b"{" + b" " * 200_000] * 4), headers={"content-type": "application/json"})
        check_error(chunked, 413, "chunked")
        assert http.post(url, json=chat()).status_code == 200
