"""`progresslm eval --backend openai` against `progresslm serve` over the network gives the same
replies and metrics as the backend run in-process (greedy, same seed)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.backends.base import BackendOptions
from progresslm.bench.format import read_official
from progresslm.cli.main import main
from progresslm.evaluation import EvalConfig, evaluate
from progresslm.serve import ServeConfig, create_app
from progresslm.serve.runner import BackgroundServer, ServerProcess

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")

N_SAMPLES = 30  # the five fixture files
RECORD_KEYS = ("prompt_hash", "reply", "status", "score", "ref_status", "ref", "error")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    files = [fixture(name) for name in BENCH_FILES]
    for path in files:
        write_images(read_official(path).samples, root / "images")
    return [str(path) for path in files], str(root / "images")


def read_run(out: Path) -> tuple[dict, dict]:
    """metrics.json and {(uid, draw): (prompt hash, reply, parsed status, score, anchor)} of a run folder."""
    replies = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        replies[record["uid"], record["draw"]] = tuple(record[key] for key in RECORD_KEYS)
    return json.loads((out / "metrics.json").read_text()), replies


def same_metrics(a: dict, b: dict) -> None:
    assert json.dumps(a["splits"], sort_keys=True) == json.dumps(b["splits"], sort_keys=True)
    assert a["n_replies"] == b["n_replies"] == N_SAMPLES and a["n_refused"] == b["n_refused"] == 0


# --------------------------------------------------------------------------- in-process server, pixel-nn


def test_pixel_nn_through_the_server_matches_in_process(bench, tmp_path):
    files, image_root = bench

    def run(out: Path, backend: str, options: BackendOptions) -> tuple[dict, dict]:
        config = EvalConfig(bench=files, out=str(out), backend=backend, image_root=image_root, bootstrap=0,
                            floors=False, plots=False, options=options)  # fmt: skip
        evaluate(config, progress=False)
        return read_run(out)

    local_metrics, local_replies = run(tmp_path / "local", "pixel-nn", BackendOptions(seed=0))
    app = create_app(ServeConfig(backend="pixel-nn", max_batch=8, batch_wait_ms=20, port=0))
    with BackgroundServer(app) as server:
        client = BackendOptions(model="whatever-name", base_url=f"{server.url}/v1", concurrency=8, max_retries=0)
        served_metrics, served_replies = run(tmp_path / "served", "openai", client)
        health = app.state.serve.health()
    assert served_replies == local_replies and len(local_replies) == N_SAMPLES
    same_metrics(served_metrics, local_metrics)
    assert health["batching"]["requests"] == N_SAMPLES


# --------------------------------------------------------------------------- the commands, a local model


def test_progresslm_serve_and_eval_give_the_in_process_metrics(bench, tmp_path, tiny_vlm_dir):
    files, image_root = bench
    # Greedy, same seed, 24 new tokens. One prompt per forward pass on both sides: padding a batch
    # differently can flip a near-tie of a random model, which says nothing about the server.
    model = ["--model", str(tiny_vlm_dir), "--device", "cpu", "--batch-size", "1", "--max-new-tokens", "24",
             "--seed", "0", "--temperature", "0"]  # fmt: skip
    common = ["eval", "--bench", *files, "--image-root", image_root, "--bootstrap", "0", "--no-floors", "--no-plots",
              "--quiet"]  # fmt: skip
    server = ServerProcess(["--backend", "hf", *model, "--batch-size", "8", "--batch-wait-ms", "20"])
    try:
        # the in-process run while the server loads its model
        assert main([*common, "--backend", "hf", *model, "--out", str(tmp_path / "local")]) == 0
        server.wait_ready(300.0)
        client = ["--backend", "openai", "--base-url", f"{server.url}/v1", "--model", "any", "--concurrency", "8",
                  "--max-new-tokens", "24", "--seed", "0", "--temperature", "0", "--max-retries", "0",
                  "--timeout", "600"]  # fmt: skip  # room for a machine shared with other jobs
        assert main([*common, *client, "--out", str(tmp_path / "served")]) == 0
        health = httpx.get(f"{server.url}/health", timeout=10).json()
    finally:
        code = server.stop(120.0)  # a graceful shutdown is slow on a machine busy with other work
    assert code == 0, server.output

    local_metrics, local_replies = read_run(tmp_path / "local")
    served_metrics, served_replies = read_run(tmp_path / "served")
    assert served_replies == local_replies and len(local_replies) == N_SAMPLES
    assert len({record[1] for record in local_replies.values()}) > 1  # varied replies: the test can tell inputs apart
    same_metrics(served_metrics, local_metrics)
    assert health["batching"]["requests"] == N_SAMPLES
    assert health["batching"]["largest_batch"] > 1  # the server gathered concurrent requests into batches
