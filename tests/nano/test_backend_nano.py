"""`nano`: the shipped ProgressLM-nano v1 through the hf backend with matcher hints, and `train export --model`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers import fixture, write_images  # noqa: E402

from progresslm import matcher as matcher_package  # noqa: E402
from progresslm import nano as nano_package  # noqa: E402
from progresslm.ask import Item, ask  # noqa: E402
from progresslm.backends.base import BackendError, BackendOptions  # noqa: E402
from progresslm.backends.registry import create_backend  # noqa: E402
from progresslm.bench.format import read_official  # noqa: E402
from progresslm.checkpoints import weights_id  # noqa: E402
from progresslm.cli.main import main  # noqa: E402
from progresslm.nano import backend_nano  # noqa: E402
from progresslm.parsing import parse_two_stage  # noqa: E402
from progresslm.prompts import build_prompt  # noqa: E402
from progresslm.types import Status  # noqa: E402

SHIPPED = (nano_package.VLM_DIR / "model.safetensors").is_file() and (matcher_package.MATCHER_DIR / "model.safetensors").is_file()
SIM = Path(__file__).resolve().parents[1] / "fixtures" / "sim_sample"


def greedy_reply(backend, tmp_path):
    """The backend's reply to the two-stage prompt of one fixture sample (its images written under tmp_path)."""
    sample = read_official(fixture("visual_same_view")).samples[0]
    write_images([sample], tmp_path / "images")
    (answer,) = ask(backend, [Item(sample, build_prompt(sample, "two-stage", tmp_path / "images"))])
    return answer.reply


def test_a_missing_checkpoint_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr("progresslm.nano.VLM_DIR", tmp_path / "nano")
    with pytest.raises(BackendError, match="ProgressLM-nano is not in this install.*make nano"):
        create_backend("nano", BackendOptions(), "two-stage")


def test_nano_takes_another_checkpoint_caps_generation_and_asks_for_hints(tiny_nano_dir):
    backend = create_backend("nano", BackendOptions(model=str(tiny_nano_dir), device="cpu"), "two-stage")
    assert backend.options.max_new_tokens == backend_nano.NANO_MAX_NEW_TOKENS
    assert backend.model_name == str(tiny_nano_dir) and backend.default_hints == "matcher"
    assert type(backend.model).__name__ == "FastVlmForConditionalGeneration"
    backend = create_backend("nano", BackendOptions(model=str(tiny_nano_dir), max_new_tokens=9), "two-stage")
    assert backend.options.max_new_tokens == 9  # an explicit --max-new-tokens wins


def test_the_weights_id_follows_the_weights(tmp_path):
    for name, content in (("a", b"weights of one release"), ("b", b"weights of the next")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(content)
    first, second = weights_id(tmp_path / "a"), weights_id(tmp_path / "b")
    assert first != second and len(first) == 8 and int(first, 16) >= 0


@pytest.mark.skipif(not SHIPPED, reason="the default models are not in this checkout")
def test_the_shipped_models_are_small_and_documented():
    total = 0
    for folder in (nano_package.VLM_DIR, matcher_package.MATCHER_DIR):
        files = {path.name: path.stat().st_size for path in folder.iterdir()}
        total += sum(files.values())
        assert "model.safetensors" in files and "README.md" in files
        card = (folder / "README.md").read_text()
        for section in ("## Data", "## Recipe", "## Results", "## Limits"):
            assert section in card, (folder, section)
    assert total <= 40 * 2**20


@pytest.mark.skipif(not SHIPPED, reason="the default models are not in this checkout")
@pytest.mark.parametrize("backend", ["nano", "matcher"])
def test_the_shipped_models_answer_in_the_two_stage_format(backend, tmp_path):
    """A real forward pass of the shipped weights on six rows of the small simulated benchmark (copied into
    tests/fixtures/sim_sample with their images): every reply parses, and the run is named by the weights."""
    from progresslm.evaluation import EvalConfig, evaluate

    files = sorted(str(path) for path in SIM.glob("*.jsonl"))
    config = EvalConfig(bench=files, out=str(tmp_path / "run"), backend=backend, image_root=str(SIM / "images"),
                        bootstrap=0, plots=False, options=BackendOptions(device="cpu"))  # fmt: skip
    outcome = evaluate(config, progress=False)
    rows = [json.loads(line) for line in (Path(outcome.out) / "results.jsonl").read_text().splitlines()]
    folder = nano_package.VLM_DIR if backend == "nano" else matcher_package.MATCHER_DIR
    name = f"progresslm-{backend}@{weights_id(folder)}"
    assert len(rows) == 6 and all(row["model"] == name for row in rows)
    parsed = [parse_two_stage(row["reply"]) for row in rows]
    assert all(p.status is not Status.PARSE_FAILURE for p in parsed), [row["reply"] for row in rows]
    identity = json.loads((Path(outcome.out) / "config.json").read_text())["identity"]
    assert ("hints" in identity) == (backend == "nano")


def test_export_copies_a_full_model_without_training_state(tiny_vlm_dir, tmp_path):
    source = tmp_path / "trained"
    shutil.copytree(tiny_vlm_dir, source)
    (source / "checkpoint-5").mkdir()
    (source / "optimizer.pt").write_bytes(b"x")
    out = tmp_path / "exported"
    assert main(["train", "export", "--model", str(source), "--out", str(out)]) == 0
    names = {path.name for path in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "export.json" in names
    assert "checkpoint-5" not in names and "optimizer.pt" not in names
    # The export computes what the trained model computes, and answers a real prompt as it does.
    exported, trained = (create_backend("hf", BackendOptions(model=str(path), device="cpu", max_new_tokens=6),
                                        "two-stage") for path in (out, source))  # fmt: skip
    ids = torch.arange(3, 19)[None]
    with torch.no_grad():
        logits = exported.model(input_ids=ids).logits
        assert logits.shape[:2] == (1, 16) and torch.isfinite(logits).all()
        assert torch.equal(logits, trained.model(input_ids=ids).logits)
    replies = [greedy_reply(backend, tmp_path) for backend in (exported, trained)]
    assert replies[0].error is None and replies[0].completion_tokens and replies[0].text == replies[1].text
    assert main(["train", "export", "--model", str(tmp_path / "nothing"), "--out", str(out)]) == 2
