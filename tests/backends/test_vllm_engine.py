"""The vLLM backend: message conversion and errors everywhere; the real engine only on a GPU with vLLM."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.registry import backend_class
from progresslm.backends.vllm_engine import VLLMBackend, request_seed, to_openai_messages
from progresslm.bench.format import read_official
from progresslm.images import ImageStore
from progresslm.prompts import build_prompt

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official_sample"


def test_image_parts_become_image_urls_in_order():
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Step 1: "},
                {"type": "image"},
                {"type": "text", "text": "\nNow: "},
                {"type": "image"},
            ],
        },
        {"role": "assistant", "content": "plain string"},
    ]
    converted = to_openai_messages(messages, ["data:a", "data:b"])
    assert converted == [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Step 1: "},
                {"type": "image_url", "image_url": {"url": "data:a"}},
                {"type": "text", "text": "\nNow: "},
                {"type": "image_url", "image_url": {"url": "data:b"}},
            ],
        },
        {"role": "assistant", "content": "plain string"},
    ]
    assert messages[1]["content"][1] == {"type": "image"}  # the prompt itself is left as it was


def test_conversion_of_a_benchmark_prompt():
    sample = read_official(FIXTURES / "visual_same_view.jsonl").samples[0]
    prompt = build_prompt(sample, "two-stage", "/images")
    urls = [f"data:image/jpeg;base64,{i}" for i in range(len(prompt.images))]
    converted = to_openai_messages(prompt.messages, urls)
    found = [part["image_url"]["url"] for part in converted[1]["content"] if part["type"] == "image_url"]
    assert found == urls
    texts = [part["text"] for part in converted[1]["content"] if part["type"] == "text"]
    assert texts == [part["text"] for part in prompt.messages[1]["content"] if part["type"] == "text"]


@pytest.mark.parametrize("count", [1, 3])
def test_image_count_must_match(count):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]
    with pytest.raises(ValueError, match="image"):
        to_openai_messages(messages, ["data:x"] * count)


def test_request_seeds_differ_by_draw_and_follow_the_seed():
    sample = read_official(FIXTURES / "visual_same_view.jsonl").samples[0]
    prompt = build_prompt(sample, "direct")
    first, second = (Request(sample.uid, draw, prompt, sample) for draw in (0, 1))
    assert request_seed(0, first) == request_seed(0, first)
    assert request_seed(0, first) != request_seed(0, second)
    assert request_seed(0, first) != request_seed(1, first)
    assert 0 <= request_seed(12345, second) < 2**31


def test_missing_vllm_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendError, match=r"pip install -e '\.\[vllm\]'.*CUDA GPU"):
        VLLMBackend(BackendOptions(model=str(tmp_path)), "two-stage")


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        VLLMBackend(BackendOptions(model=str(tmp_path / "nowhere")), "two-stage")


def test_registry_finds_the_backend():
    assert backend_class("vllm") is VLLMBackend
    assert VLLMBackend.image_format == "data_url"


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_real_engine_answers_every_request(tiny_vlm_dir, tmp_path):
    from PIL import Image

    samples = read_official(FIXTURES / "visual_same_view.jsonl").samples[:3]
    for sample in samples:
        for name in sample.image_names():
            path = sample.image_path(name, tmp_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (56, 56), (len(name) * 7 % 255, 90, 160)).save(path)
    store = ImageStore()
    requests = []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", tmp_path)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "data_url")))
    backend = VLLMBackend(BackendOptions(model=str(tiny_vlm_dir), max_new_tokens=8, dtype="float16"), "two-stage")
    try:
        replies = dict(backend.generate(requests))
    finally:
        backend.close()
    assert sorted(replies) == [0, 1, 2]
    assert all(reply.prompt_tokens > 0 and reply.completion_tokens > 0 for reply in replies.values())
