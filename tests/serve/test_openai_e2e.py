"""`progresslm eval --backend openai` against `progresslm serve` over the network gives the same
replies and metrics as the backend run in-process."""

from __future__ import annotations

import json

import pytest

from helpers import BENCH_FILES, fixture, write_images
from progresslm.backends.base import BackendOptions
from progresslm.evaluate import EvalConfig, evaluate
from progresslm.official import read_official
from progresslm.serve import ServeConfig, create_app
from progresslm.serve.runner import BackgroundServer


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    files = [fixture(name) for name in BENCH_FILES]
    for path in files:
        write_images(read_official(path).samples, root / "images")
    return [str(path) for path in files], str(root / "images")


def run_eval(bench, out, backend: str, options: BackendOptions) -> tuple[dict, dict]:
    files, image_root = bench
    config = EvalConfig(bench=files, out=str(out), backend=backend, image_root=image_root, bootstrap=0,
                        floors=False, plots=False, options=options)  # fmt: skip
    outcome = evaluate(config, progress=False)
    replies = {}
    for line in (outcome.out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        replies[record["uid"]] = record["reply"]
    return outcome.metrics, replies


def through_server(bench, out, backend: str, options: BackendOptions, max_batch: int = 8) -> tuple[dict, dict, dict]:
    app = create_app(ServeConfig(backend=backend, options=options, max_batch=max_batch, batch_wait_ms=20, port=0))
    with BackgroundServer(app) as server:
        client = BackendOptions(model="whatever-name", base_url=f"{server.url}/v1", concurrency=8,
                                max_new_tokens=options.max_new_tokens, seed=options.seed, max_retries=0)  # fmt: skip
        metrics, replies = run_eval(bench, out, "openai", client)
        health = app.state.serve.health()
    return metrics, replies, health


def same_metrics(a: dict, b: dict) -> None:
    assert json.dumps(a["splits"], sort_keys=True) == json.dumps(b["splits"], sort_keys=True)
    assert a["n_replies"] == b["n_replies"] and a["n_refused"] == b["n_refused"] == 0


def test_pixel_nn_through_the_server_matches_in_process(bench, tmp_path):
    options = BackendOptions(seed=0)
    local_metrics, local_replies = run_eval(bench, tmp_path / "local", "pixel-nn", options)
    served_metrics, served_replies, health = through_server(bench, tmp_path / "served", "pixel-nn", options)
    assert served_replies == local_replies and len(local_replies) == 30
    same_metrics(served_metrics, local_metrics)
    assert health["batching"]["requests"] == 30


def test_hf_through_the_server_matches_in_process(bench, tmp_path, tiny_vlm_dir):
    # Greedy, same seed. One request per forward pass on both sides: padding a batch differently
    # can flip a near-tie of a random model, which says nothing about the server.
    options = BackendOptions(model=str(tiny_vlm_dir), device="cpu", max_new_tokens=12, seed=0, batch_size=1)
    local_metrics, local_replies = run_eval(bench, tmp_path / "local", "hf", options)
    served_metrics, served_replies, health = through_server(bench, tmp_path / "served", "hf", options)
    assert served_replies == local_replies
    assert len(set(local_replies.values())) > 1  # the model says varied things: the test can tell inputs apart
    same_metrics(served_metrics, local_metrics)
    assert health["batching"]["largest_batch"] > 1  # the server still gathered concurrent requests
