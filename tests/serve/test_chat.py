"""OpenAI messages back into prompts: the exact messages, the sample behind them, the reply object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture

from progresslm.backends.openai_compat import to_openai_messages
from progresslm.bench.format import read_official
from progresslm.prompts import build_prompt
from progresslm.serve.chat import read_messages, recognise_sample
from progresslm.serve.errors import ApiError
from tests.serve.payloads import data_url as url


def samples():
    return [sample for name in BENCH_FILES for sample in read_official(fixture(name)).samples]


@pytest.mark.parametrize("mode", ["two-stage", "direct"])
def test_every_fixture_prompt_comes_back_as_built_with_its_sample(mode):
    for sample in samples():
        prompt = build_prompt(sample, mode)
        wire = to_openai_messages(prompt.messages, [url(10 * k) for k in range(len(prompt.images))])
        chat = read_messages(wire, max_images=32, max_pixels=10**6)
        assert chat.messages == prompt.messages, sample.uid
        names = [f"img{k}.png" for k in range(len(chat.uploads))]
        found, found_mode = recognise_sample(chat.messages, names, "uid")
        assert found_mode == mode
        assert found.goal == sample.goal and found.demo.modality is sample.demo.modality
        assert found.demo.total_steps == sample.demo.total_steps
        assert found.demo.progress_points() == sample.demo.progress_points()
        if sample.demo.modality.value == "text":
            assert found.demo.items == tuple(step.strip() for step in sample.demo.items)
        assert found.observation == names[-1]


def test_other_chats_are_not_taken_for_progress_prompts():
    chat = read_messages([{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                       {"type": "image_url", "image_url": {"url": url(3)}}]}], 32, 10**6)
    assert chat.messages == [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image"}]}]
    assert recognise_sample(chat.messages, ["a.png"], "u") is None
    sample = samples()[0]
    prompt = build_prompt(sample, "two-stage")
    wire = to_openai_messages(prompt.messages, [url(1)] * len(prompt.images))
    wire[1]["content"][0]["text"] = wire[1]["content"][0]["text"].replace("Task goal", "Goal")
    assert recognise_sample(read_messages(wire, 32, 10**6).messages, ["x"] * len(prompt.images), "u") is None


@pytest.mark.parametrize(
    "messages, where",
    [
        ([], "messages"),
        (["hi"], "messages[0]"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "messages[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}],
         "messages[0].content[0].image_url.url"),
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "messages[1].role"),
    ],
)
def test_bad_messages_say_where(messages, where):
    with pytest.raises(ApiError) as caught:
        read_messages(messages, 32, 10**6)
    assert caught.value.status == 400 and caught.value.where == where


def test_image_limits():
    parts = [{"type": "image_url", "image_url": {"url": url(k)}} for k in range(3)]
    with pytest.raises(ApiError, match="more than 2 images"):
        read_messages([{"role": "user", "content": parts}], max_images=2, max_pixels=10**6)
    with pytest.raises(ApiError, match="limit of 100"):
        read_messages([{"role": "user", "content": parts[:1]}], max_images=2, max_pixels=100)


def test_chat_endpoint_reply_object_and_settings(client):
    body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 5, "seed": 3}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["object"] == "chat.completion" and data["model"] == "constant-50%"
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert "<score>50%</score>" in data["choices"][0]["message"]["content"]
    assert set(data["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert client.get("/v1/models").json()["data"][0]["id"] == "constant-50%"
    too_long = client.post("/v1/chat/completions", json={**body, "max_tokens": 10**6})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in streamed.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    content = {i: "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]
                          if json.loads(e)["choices"][0]["index"] == i) for i in (0, 1)}  # fmt: skip
    assert content == {c["index"]: c["message"]["content"] for c in data["choices"]}


def test_pixel_nn_needs_a_progress_prompt(pixel_client):
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url(0)}}]}]}
    reply = pixel_client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "not_a_progress_prompt"
    assert not list(Path(pixel_client.app.state.serve.files.folder).iterdir())  # its image file is gone again
