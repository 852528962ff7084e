"""`progresslm serve` against requests built to stall it, wedge it or make it use gigabytes: each is refused with
the status and limit a client can act on, and the server keeps answering /health."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")

from progresslm.prompts import SYSTEM  # noqa: E402
from tests.serve.payloads import b64, data_url, make_client  # noqa: E402


def png(size: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), "white").save(buffer, format="PNG")  # solid: a tiny file of many pixels
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_a_huge_prompt_of_step_fragments_is_refused_fast_and_health_keeps_answering():
    with make_client("constant") as client:
        text = "Task goal: g\nDemonstration: 3 steps.\n" + "Step 1: " * 40_000  # ~320 kB
        body = {"messages": [{"role": "system", "content": SYSTEM["two-stage"]}, {"role": "user", "content": text}]}
        started = time.perf_counter()
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "prompt_too_long"
        assert "--max-prompt-chars" in reply.json()["error"]["message"]
        under = {"messages": [body["messages"][0], {"role": "user", "content": text[:200_000]}]}
        assert client.post("/v1/chat/completions", json=under).status_code == 200  # under the cap: linear, answered
        assert time.perf_counter() - started < 30  # generous: the quadratic regex took ~13 s for 160 kB alone
        assert client.get("/health").status_code == 200


def test_truncated_images_are_a_400_bad_image_on_every_endpoint():
    """Half a JPEG passes PIL's `verify()`; decoded inside pixel-nn it was a 500 from the chat endpoint."""
    import numpy as np
    from PIL import Image

    from progresslm.prompts import build_prompt
    from progresslm.types import Demo, Modality, Sample

    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(buffer, format="JPEG")
    cut = base64.b64encode(buffer.getvalue()[: len(buffer.getvalue()) // 2]).decode("ascii")
    sample = Sample("u", "t", "g", Demo(Modality.VISUAL, ("a.png", "b.png"), 1), "o.png", None, None)
    url = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{cut}"}}
    messages = [{"role": m["role"], "content": [p if p["type"] == "text" else url for p in m["content"]]}
                for m in build_prompt(sample, "two-stage").messages]  # fmt: skip
    with make_client("pixel-nn") as client:
        reply = client.post("/v1/chat/completions", json={"messages": messages})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_image", reply.text
        progress = {"goal": "g", "demo_images": [b64(0), b64(9)], "observation": cut}
        reply = client.post("/v1/progress", json=progress)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_image"


def test_session_samples_are_bounded_by_the_queue_and_leave_no_files():
    with make_client("pixel-nn", max_queue=16, max_frames_per_call=4) as client:
        body = {"goal": "g", "demo_images": [b64(0), b64(200)], "monitor": {"samples": 5000}}
        reply = client.post("/v1/sessions", json=body)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "monitor.samples"
        assert "samples must be 1 to 4" in reply.json()["error"]["message"]
        assert len(client.app.state.serve.sessions) == 0
        ok = client.post("/v1/sessions", json={**body, "temperature": 0.7, "monitor": {"samples": 4, "stall_seconds": None}})
        assert ok.status_code == 200, ok.text


def test_pixel_budgets_per_request_and_in_flight():
    big = png(2048)  # 4.2 M pixels, a few kB
    with make_client("pixel-nn", max_request_pixels=10_000_000, max_inflight_pixels=12_000_000) as client:
        body = {"goal": "g", "demo_images": [big, big], "observation": big}
        reply = client.post("/v1/progress", json=body)
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "too_many_pixels"
        state = client.app.state.serve
        assert state.pixels.inflight == 0  # released on the refusal
        taken = state.pixels.request()
        taken.take(9_000_000, "elsewhere")  # another request is decoding
        reply = client.post("/v1/progress", json={**body, "demo_images": [b64(0), b64(9)]})
        assert reply.status_code == 429 and "--max-inflight-pixels" in reply.json()["error"]["message"]
        assert reply.headers["retry-after"] == "1"
        taken.release()
        assert client.post("/v1/progress", json={**body, "demo_images": [b64(0), b64(9)], "observation": b64(5)}).status_code == 200


def test_text_demonstrations_are_capped():
    with make_client("constant", max_demo_steps=10) as client:
        body = {"goal": "g", "demo_steps": [f"step {i}" for i in range(11)], "observation": b64(3)}
        reply = client.post("/v1/progress", json=body)
        assert reply.status_code == 400 and "--max-demo-steps" in reply.json()["error"]["message"]


def test_api_key_guards_every_route_but_health():
    with make_client("constant", api_key="s3cret-key-123") as client:
        assert client.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong-key-0000"}, {"Authorization": "Basic s3cret-key-123"}):
            reply = client.get("/v1/models", headers=headers)
            assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
            assert reply.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret-key-123"}).status_code == 200


def test_a_half_sent_body_is_answered_408_and_does_not_hold_the_server():
    """A real uvicorn on 127.0.0.1: a client sends headers and part of a body, then nothing."""
    from progresslm.serve import ServeConfig, create_app
    from progresslm.serve.runner import BackgroundServer

    config = ServeConfig(backend="constant", port=0, body_timeout_s=1.0)
    with BackgroundServer(create_app(config), config) as server:
        sockets = []
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(b"POST /v1/progress HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"goal\":")  # fmt: skip
            sockets.append(conn)
        import httpx

        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200  # others are served meanwhile
        answers = []

        def read(conn):
            try:
                answers.append(conn.recv(4096))
            except OSError:
                answers.append(b"")

        readers = [threading.Thread(target=read, args=(c,)) for c in sockets]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(timeout=15)
        for conn in sockets:
            conn.close()
        assert len(answers) == 20 and all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]


def test_big_images_within_the_limits_are_decoded_down_to_the_working_size():
    with make_client("constant", work_side=256) as client:
        body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(5)}}]}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    from progresslm.serve.request_images import check_image

    upload = check_image(base64.b64decode(png(2048)), "observation", 8_000_000, work_side=256)
    assert (upload.width, upload.height) == (2048, 2048) and upload.pil().size == (256, 256)
