"""The demonstration cache of the `nano` backend: a demonstration's image features and prompt prefix computed once,
the answers unchanged; through the backend, the online scorer and the server's sessions."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("timm")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from progresslm import matcher as matcher_package  # noqa: E402
from progresslm import nano as nano_package  # noqa: E402
from progresslm.backends.base import BackendError, BackendOptions, Request  # noqa: E402
from progresslm.backends.hf_transformers import HFBackend  # noqa: E402
from progresslm.backends.registry import create_backend  # noqa: E402
from progresslm.bench.format import load_bench  # noqa: E402
from progresslm.images import ImageStore  # noqa: E402
from progresslm.nano.demo_cache import LRU, DemoCache, image_key  # noqa: E402
from progresslm.prompts import build_prompt  # noqa: E402

SHIPPED = (nano_package.VLM_DIR / "model.safetensors").is_file() and (matcher_package.MATCHER_DIR / "model.safetensors").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="the default models are not in this checkout")
SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim_sample"
PICK = SIM / "images" / "sim" / "pick-place-wall-v3" / "bench_001"  # a 5-keyframe demonstration and its frames
DEMO = [PICK / "demo" / f"corner_{i:04d}.jpg" for i in (0, 17, 29, 42, 77)]
FRAMES = [PICK / "corner_0025.jpg", PICK / "demo" / "corner4_0017.jpg", PICK / "demo" / "corner4_0042.jpg"]


def test_the_lru_drops_the_least_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the newest
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"] and lru.get("b") is None and len(lru) == 2
    lru.put("a", 4)  # rewriting refreshes too
    lru.put("d", 5)
    assert lru.keys() == ["a", "d"] and lru.get("a") == 4
    with pytest.raises(ValueError, match="at least 1"):
        LRU(0)


def test_the_image_key_follows_the_pixels_not_the_object():
    first = Image.new("RGB", (4, 4), (10, 20, 30))
    assert image_key(first) == image_key(Image.new("RGB", (4, 4), (10, 20, 30)))
    changed = first.copy()
    changed.putpixel((3, 3), (10, 20, 31))
    assert image_key(changed) != image_key(first)
    assert image_key(Image.new("RGB", (2, 8), (10, 20, 30))) != image_key(first)  # the same bytes, another shape
    assert image_key(first.convert("RGBA")) != image_key(first)
    with pytest.raises(BackendError, match="PIL images, got a ndarray"):
        image_key(__import__("numpy").zeros((4, 4, 3)))


class TowerRows:
    """Counts the images the vision tower is run on (a forward hook: the real tower runs)."""

    def __init__(self, backend):
        self.calls: list[int] = []
        self._handle = backend.model.model.vision_tower.register_forward_hook(
            lambda module, args, output: self.calls.append(int(args[0].shape[0]))
        )

    @property
    def rows(self) -> int:
        return sum(self.calls)

    def close(self) -> None:
        self._handle.remove()


def generate_inputs(backend, requests, cached: bool) -> dict:
    texts = [backend.processor.apply_chat_template(r.prompt.messages, add_generation_prompt=True, tokenize=False)
             for r in requests]  # fmt: skip
    images = [image for r in requests for image in r.images]
    if cached:
        return backend.demo_cache.inputs(texts, images)
    return HFBackend._model_inputs(backend, texts, images)


def first_scores(backend, inputs) -> torch.Tensor:
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True, temperature=None, top_p=None, top_k=None,
                                     pad_token_id=backend.processor.tokenizer.pad_token_id)  # fmt: skip
    return out.scores[0]


def one_demo_requests(frames=FRAMES, hints: str | None = None) -> list[Request]:
    """Requests for the pick-place demonstration, one per frame (paths absolute, so no image root)."""
    from progresslm.types import Demo, Modality, Sample

    demo = Demo(Modality.VISUAL, tuple(str(p) for p in DEMO), total_steps=len(DEMO) - 1)
    store = ImageStore()
    requests = []
    for i, frame in enumerate(frames):
        sample = Sample(f"f{i}", "t", "pick the puck and place it behind the wall", demo, str(frame), None, None)
        prompt = build_prompt(sample, "two-stage", None, hints=hints)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil")))
    return requests


def test_a_tiny_fastvlm_scores_the_same_from_the_cache(tiny_nano_dir):
    """nano's architecture at test size (no shipped weights needed): the same ids and mask as the processor
    makes, and the same next-token scores from cached features and a cached prefix as from the whole prompt."""
    backend = create_backend("nano", BackendOptions(model=str(tiny_nano_dir), device="cpu"), "two-stage")
    cache = backend.demo_cache
    assert cache is not None and cache.tokens_per_image == 4  # 64 px through a stride of 32
    requests = one_demo_requests()
    for batch in (requests[:1], requests):
        plain, cached = generate_inputs(backend, batch, False), generate_inputs(backend, batch, True)
        assert torch.equal(plain["input_ids"], cached["input_ids"])
        assert torch.equal(plain["attention_mask"], cached["attention_mask"])
    cache.clear()
    before = dataclasses.replace(cache.stats)
    rows = TowerRows(backend)
    try:
        for request in requests:  # one at a time: the second and third reuse the first one's prefix
            scores = first_scores(backend, generate_inputs(backend, [request], True))
            assert torch.allclose(scores, first_scores(backend, generate_inputs(backend, [request], False)), atol=1e-4)
    finally:
        rows.close()
    # the demonstration once and each frame once with the cache; all 6 images each time without it
    assert rows.calls == [5, 1, 6, 1, 6, 1, 6]
    assert cache.stats.prefix_misses - before.prefix_misses == 1 and cache.stats.prefix_hits - before.prefix_hits == 2


def test_the_cache_refuses_what_it_cannot_serve(tiny_nano_dir):
    backend = create_backend("nano", BackendOptions(model=str(tiny_nano_dir), device="cpu"), "two-stage")
    assert DemoCache.unsupported(backend.model, backend.processor.tokenizer).endswith("not a LlavaProcessor")
    with pytest.raises(BackendError, match="does not fit this model: its processor is a"):
        DemoCache(backend.model, backend.processor.tokenizer)
    with pytest.raises(BackendError, match="hold 8 image tokens, not 4 for each of the 1 images"):
        backend.demo_cache.inputs(["<|image_pad|> and <|image_pad|>"], [Image.new("RGB", (8, 8))])


@pytest.fixture(scope="module")
def nano_backend():
    backend = create_backend("nano", BackendOptions(device="cpu", batch_size=1), "two-stage")
    yield backend
    backend.close()


def sim_requests() -> list[Request]:
    """The six rows of the small simulated benchmark with the matcher's hints, plus three more observations of
    one visual demonstration and one of a text one (so prefixes repeat)."""
    from progresslm.matcher.hints import HintProvider

    samples = load_bench(sorted(str(p) for p in SIM.glob("*.jsonl"))).samples
    visual = next(s for s in samples if s.uid == "visual_same_view:2")
    text = next(s for s in samples if s.uid == "text-normal:1")
    extra = [dataclasses.replace(visual, uid=f"more:{i}", observation=name)
             for i, name in enumerate(("demo/corner4_0017.jpg", "demo/corner4_0042.jpg", "demo/corner_0029.jpg"))]
    extra.append(dataclasses.replace(text, uid="more:text", observation="demo/corner4_0048.jpg"))  # fmt: skip
    samples = [*samples, *extra]
    root = SIM / "images"
    hints = HintProvider().hints(samples, root)
    store = ImageStore()
    requests = []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", root, hints=hints.get(sample.uid))
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil")))
    return requests


def replies(backend, requests, batch_size: int, cached: bool) -> list[str]:
    cache = backend.demo_cache
    backend.options.batch_size = batch_size
    backend.demo_cache = cache if cached else None
    try:
        return [reply.text for _, reply in sorted(backend.generate(requests), key=lambda pair: pair[0])]
    finally:
        backend.demo_cache = cache
        backend.options.batch_size = 1


@needs_shipped
def test_the_shipped_nano_answers_the_same_with_the_cache(nano_backend):
    """Greedy replies of the shipped weights on ten requests, one at a time (features and prefixes cached) and in
    batches of 4 (features cached), are the replies without the cache."""
    requests = sim_requests()
    cache = nano_backend.demo_cache
    cache.clear()
    before = dataclasses.replace(cache.stats)
    alone = replies(nano_backend, requests, 1, cached=False)
    assert len(set(alone)) > 2, alone  # the replies depend on the request: mixed-up features would show
    assert replies(nano_backend, requests, 1, cached=True) == alone
    assert replies(nano_backend, requests, 4, cached=True) == replies(nano_backend, requests, 4, cached=False)
    assert cache.stats.prefix_hits - before.prefix_hits == 4  # the four extra observations
    assert cache.stats.image_hits > before.image_hits


@needs_shipped
def test_a_scorer_runs_the_tower_on_its_demonstration_once(nano_backend):
    """Frame after frame, and again in a second scorer over the same keyframes (other files, same pixels): the
    keyframes go through the tower once; the estimates are those without the cache."""
    from progresslm.online.scorer import ProgressScorer

    nano_backend.demo_cache.clear()
    rows = TowerRows(nano_backend)
    try:
        goal = "pick the puck and place it behind the wall"
        with ProgressScorer(goal, [Image.open(p).convert("RGB") for p in DEMO], backend=nano_backend) as scorer:
            cached = [scorer.score([frame])[0].reply for frame in FRAMES[:2]]
        with ProgressScorer(goal, DEMO, backend=nano_backend) as scorer:
            cached.append(scorer.score([FRAMES[2]])[0].reply)
        assert rows.calls == [5, 1, 1, 1]
        cache, nano_backend.demo_cache = nano_backend.demo_cache, None
        try:
            with ProgressScorer(goal, DEMO, backend=nano_backend) as scorer:
                plain = [scorer.score([frame])[0].reply for frame in FRAMES]
        finally:
            nano_backend.demo_cache = cache
    finally:
        rows.close()
    assert cached == plain and all("<score>" in reply for reply in plain)


@needs_shipped
def test_serve_sessions_over_one_demonstration_share_its_features(nano_backend):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from progresslm.serve import ServeConfig, create_app

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode("ascii")

    nano_backend.demo_cache.clear()
    rows = TowerRows(nano_backend)
    body = {"goal": "pick the puck and place it behind the wall", "demo_images": [b64(p) for p in DEMO]}
    try:
        with TestClient(create_app(ServeConfig(backend="nano"), nano_backend)) as client:
            sessions = [client.post("/v1/sessions", json=body).json()["id"] for _ in range(2)]
            for session, frame in zip([*sessions, sessions[0]], FRAMES):
                reply = client.post(f"/v1/sessions/{session}/frames", json={"frames": [b64(frame)]})
                assert reply.status_code == 200, reply.text
    finally:
        rows.close()
    assert rows.rows == len(DEMO) + len(FRAMES)  # two sessions, one demonstration through the tower
