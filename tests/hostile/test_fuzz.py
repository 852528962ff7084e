"""Seeded fuzzing: the reply parser never raises or hangs, and the server's request schemas answer every body
with a 2xx or a 4xx that names a place, never a 5xx."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.parsing import parse_direct, parse_two_stage

TAGS = ["<ref>", "</ref>", "<score>", "</score>", "<ref_think>", "</score_think>", "n/a", "N / A", "%", "1e9", "-0",
        "\x00", "\u200b", " " * 50, "0.5", "999999999999"]  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=20)), max_size=40))
def test_the_parser_takes_any_reply(pieces):
    reply = "".join(pieces)
    for prediction in (parse_two_stage(reply), parse_direct(reply)):
        assert prediction.raw == reply
        assert prediction.score is None or 0.0 <= prediction.score <= 1.0


def _mutations(body: dict, rng: random.Random, n: int):
    """Bodies made from a valid one: fields dropped, retyped, nested, enlarged."""
    junk = [None, 0, -1, 1e308, float("inf") if False else 1e-308, "", "x" * 5000, [], {}, [None], {"a": {"b": []}},
            True, "data:image/png;base64,AAAA", "../../etc/passwd", "file:///etc/passwd", "http://example.com/a.png"]  # fmt: skip
    keys = list(body)
    for _ in range(n):
        mutated = json.loads(json.dumps(body))
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys + ["extra"])
            choice = rng.random()
            if choice < 0.3:
                mutated.pop(key, None)
            elif choice < 0.8:
                mutated[key] = rng.choice(junk)
            elif isinstance(mutated.get(key), list) and mutated[key]:
                mutated[key] = mutated[key] * rng.randint(2, 40)
            else:
                mutated[key] = [mutated.get(key)] * rng.randint(0, 3)
        yield mutated


@pytest.mark.parametrize("path", ["/v1/progress", "/v1/sessions", "/v1/chat/completions"])
def test_fuzzed_bodies_never_get_a_server_error(path):
    pytest.importorskip("fastapi")
    from tests.serve.payloads import b64, data_url, make_client

    valid = {
        "/v1/progress": {"goal": "open", "demo_images": [b64(0), b64(200)], "observation": b64(90)},
        "/v1/sessions": {"goal": "open", "demo_steps": ["reach", "pull"], "monitor": {"stall_seconds": 5.0}},
        "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "How far?"}, {"type": "image_url", "image_url": {"url": data_url(3)}}]}]},
    }[path]  # fmt: skip
    rng = random.Random(f"fuzz:{path}")
    with make_client("pixel-nn" if path != "/v1/chat/completions" else "constant") as client:
        assert client.post(path, json=valid).status_code == 200
        for body in _mutations(valid, rng, 150):
            reply = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
            assert reply.status_code < 500, (body, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"]["message"]
        assert client.get("/health").json()["pixels_in_flight"] == 0
