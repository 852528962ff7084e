"""The transformers backend on a random-weight Qwen2.5-VL built from scratch (no download, CPU)."""

from __future__ import annotations

import sys
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from progresslm.backends.base import BackendError, BackendOptions, Request  # noqa: E402
from progresslm.backends.hf_transformers import HFBackend  # noqa: E402
from progresslm.backends.registry import backend_class  # noqa: E402
from progresslm.bench.format import read_official  # noqa: E402
from progresslm.images import ImageStore  # noqa: E402
from progresslm.prompts import build_prompt  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official_sample"


def write_images(samples, image_root: Path, size: int = 56) -> None:
    """A distinct small JPEG (two colour bands, set by the file name) at every path the samples need."""
    from PIL import Image

    for sample in samples:
        for name in sample.image_names():
            path = sample.image_path(name, image_root)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            code = zlib.crc32(str(name).encode())
            image = Image.new("RGB", (size, size), (code & 255, (code >> 8) & 255, (code >> 16) & 255))
            image.paste((255 - (code & 255), 128, (code >> 24) & 255), (0, 0, size, size // 2))
            image.save(path, quality=90)


def make_requests(file_name: str, count: int, image_root: Path) -> list[Request]:
    samples = read_official(FIXTURES / file_name).samples[:count]
    write_images(samples, image_root)
    store = ImageStore()
    requests = []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", image_root)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil")))
    return requests


@pytest.fixture(scope="module")
def visual_requests(tmp_path_factory) -> list[Request]:
    return make_requests("visual_same_view.jsonl", 3, tmp_path_factory.mktemp("images"))


def make_backend(model_dir: Path, **options) -> HFBackend:
    defaults = {"device": "cpu", "batch_size": 3, "max_new_tokens": 12, "seed": 0}
    return HFBackend(BackendOptions(model=str(model_dir), **{**defaults, **options}), "two-stage")


@pytest.fixture(scope="module")
def backend(tiny_vlm_dir) -> HFBackend:
    return make_backend(tiny_vlm_dir)


def run(backend: HFBackend, requests: list[Request], **options) -> dict:
    """Replies by request index, generated with some options changed for this call only."""
    saved = backend.options
    backend.options = replace(saved, **options)
    try:
        return dict(backend.generate(requests))
    finally:
        backend.options = saved


def test_tiny_model_loads_like_a_hub_checkpoint(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    tokenizer = processor.tokenizer
    assert tokenizer.tokenize("<score>58%</score>") == ["<score>", "5", "8", "%", "</score>"]
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "image"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\na <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_system = processor.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert no_system == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


def test_reasoning_tags_survive_decoding(tiny_vlm_dir):
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(tiny_vlm_dir).tokenizer
    answer = "<ref_think>x</ref_think><ref>2</ref><score_think>y</score_think><score>40%</score>"
    ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == answer


def test_generate_answers_every_request(backend, visual_requests):
    replies = run(backend, visual_requests)
    assert sorted(replies) == [0, 1, 2]
    for reply in replies.values():
        assert reply.text and "<|im_end|>" not in reply.text and "<|endoftext|>" not in reply.text
        assert reply.prompt_tokens > 100 and 0 < reply.completion_tokens <= 12
        assert reply.latency_s > 0


def test_greedy_is_deterministic_and_independent_of_batching(backend, visual_requests, tmp_path):
    # Prompts of three lengths (visual same-view, text demo, cross-view), so the batch is padded.
    mixed = [
        visual_requests[0],
        *make_requests("text-normal.jsonl", 1, tmp_path),
        *make_requests("visual_cross_view.jsonl", 1, tmp_path),
    ]
    batched = run(backend, mixed, batch_size=3, max_new_tokens=16)
    again = run(backend, mixed, batch_size=3, max_new_tokens=16)
    one_by_one = run(backend, mixed, batch_size=1, max_new_tokens=16)
    assert len({batched[i].prompt_tokens for i in range(3)}) == 3
    texts = [batched[i].text for i in range(3)]
    assert texts == [again[i].text for i in range(3)]
    # Left padding with the attention mask (from which Qwen's mrope positions are also computed)
    # gives each row the logits it gets alone, so greedy answers match exactly in float32.
    assert texts == [one_by_one[i].text for i in range(3)]
    assert [batched[i].prompt_tokens for i in range(3)] == [one_by_one[i].prompt_tokens for i in range(3)]


def test_text_demo_prompts_have_one_image(backend, tmp_path):
    requests = make_requests("text-normal.jsonl", 2, tmp_path)
    assert [len(request.images) for request in requests] == [1, 1]
    replies = run(backend, requests)
    assert sorted(replies) == [0, 1] and all(reply.completion_tokens > 0 for reply in replies.values())


def test_sampling_follows_the_seed(backend, visual_requests):
    first = run(backend, visual_requests, temperature=1.0, seed=1)
    repeat = run(backend, visual_requests, temperature=1.0, seed=1)
    other = run(backend, visual_requests, temperature=1.0, seed=2)
    texts = [first[i].text for i in range(3)]
    assert texts == [repeat[i].text for i in range(3)]
    assert texts != [other[i].text for i in range(3)]


def test_max_pixels_reaches_the_image_processor(tiny_vlm_dir, visual_requests):
    full = run(make_backend(tiny_vlm_dir), visual_requests[:1])[0]
    small = run(make_backend(tiny_vlm_dir, max_pixels=28 * 28), visual_requests[:1])[0]
    images = len(visual_requests[0].images)
    # A 56x56 image is 2x2 merged patches = 4 tokens; capped at 28x28 it is 1 token.
    assert full.prompt_tokens - small.prompt_tokens == 3 * images


def test_image_count_must_match_the_prompt(backend, visual_requests):
    broken = replace(visual_requests[0], images=visual_requests[0].images[:-1])
    with pytest.raises(BackendError, match="image parts"):
        list(backend.generate([broken]))


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        HFBackend(BackendOptions(model=str(tmp_path / "nowhere"), device="cpu"), "two-stage")
    with pytest.raises(BackendError, match="needs a model"):
        HFBackend(BackendOptions(model=None, device="cpu"), "two-stage")


def test_unloadable_directory_names_the_original_error(tmp_path):
    with pytest.raises(BackendError, match="could not load model"):
        HFBackend(BackendOptions(model=str(tmp_path), device="cpu"), "two-stage")


def test_missing_transformers_says_what_to_install(monkeypatch, tiny_vlm_dir):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendError, match=r"pip install -e '\.\[hf\]'"):
        HFBackend(BackendOptions(model=str(tiny_vlm_dir), device="cpu"), "two-stage")


def test_adapter_without_peft_says_what_to_install(monkeypatch, tmp_path, tiny_vlm_dir):
    monkeypatch.setitem(sys.modules, "peft", None)
    (tmp_path / "adapter_config.json").write_text(f'{{"base_model_name_or_path": "{tiny_vlm_dir}"}}')
    with pytest.raises(BackendError, match="pip install peft"):
        HFBackend(BackendOptions(model=str(tmp_path), device="cpu"), "two-stage")


def test_registry_finds_the_backend():
    assert backend_class("hf") is HFBackend


def test_the_checkpoints_generation_defaults_do_not_change_the_answers(tiny_vlm_dir, visual_requests, tmp_path):
    """Qwen2.5-VL-3B's generation_config.json samples by default with repetition_penalty 1.05 (the full-size dry run's
    model carries it); greedy and seeded sampling must answer as with a plain generation config, as vLLM does."""
    import json
    import shutil

    qwen_like = tmp_path / "qwen-like"
    shutil.copytree(tiny_vlm_dir, qwen_like)
    config_path = qwen_like / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(do_sample=True, repetition_penalty=3.0, temperature=0.1, top_p=0.001, top_k=1)
    config_path.write_text(json.dumps(config))
    plain, checkpoint = make_backend(tiny_vlm_dir), make_backend(qwen_like)
    for options in ({"max_new_tokens": 16}, {"max_new_tokens": 16, "temperature": 1.0, "seed": 1}):
        expected = run(plain, visual_requests, **options)
        got = run(checkpoint, visual_requests, **options)
        assert [got[i].text for i in range(3)] == [expected[i].text for i in range(3)]
