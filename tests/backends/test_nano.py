"""`nano`: the shipped ProgressLM-nano checkpoint through the hf backend, and `train export --model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from progresslm.backends import nano  # noqa: E402
from progresslm.backends.base import BackendError, BackendOptions  # noqa: E402
from progresslm.backends.registry import create_backend  # noqa: E402
from progresslm.cli.main import main  # noqa: E402
from progresslm.parsing import parse_two_stage  # noqa: E402
from progresslm.types import Status  # noqa: E402

SHIPPED = (nano.NANO_DIR / "model.safetensors").is_file()


def test_a_missing_checkpoint_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(nano, "NANO_DIR", tmp_path / "nano")
    with pytest.raises(BackendError, match="ProgressLM-nano is not in this install.*make nano"):
        create_backend("nano", BackendOptions(), "two-stage")


def test_nano_takes_another_checkpoint_and_caps_generation(tiny_vlm_dir):
    backend = create_backend("nano", BackendOptions(model=str(tiny_vlm_dir), device="cpu"), "two-stage")
    assert backend.options.max_new_tokens == nano.NANO_MAX_NEW_TOKENS
    assert backend.model_name == str(tiny_vlm_dir)
    backend = create_backend("nano", BackendOptions(model=str(tiny_vlm_dir), max_new_tokens=9), "two-stage")
    assert backend.options.max_new_tokens == 9  # an explicit --max-new-tokens wins


def test_the_weights_id_follows_the_weights(tmp_path):
    for name, content in (("a", b"weights of one release"), ("b", b"weights of the next")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(content)
    first, second = nano.weights_id(tmp_path / "a"), nano.weights_id(tmp_path / "b")
    assert first != second and len(first) == 8 and int(first, 16) >= 0


@pytest.mark.skipif(not SHIPPED, reason="the nano checkpoint is not in this checkout")
def test_the_shipped_checkpoint_is_small_and_documented():
    files = {path.name: path.stat().st_size for path in nano.NANO_DIR.iterdir()}
    assert sum(files.values()) <= 40 * 2**20
    assert "model.safetensors" in files and "README.md" in files
    card = (nano.NANO_DIR / "README.md").read_text()
    for section in ("## Data", "## Recipe", "## Results", "## Limits"):
        assert section in card


@pytest.mark.skipif(not SHIPPED, reason="the nano checkpoint is not in this checkout")
def test_the_shipped_model_answers_in_the_two_stage_format(tmp_path):
    """A real forward pass of the shipped weights on six rows of the small simulated benchmark (copied
    into tests/fixtures/sim_sample with their images): every reply parses in the two-stage format."""
    from progresslm.evaluate import EvalConfig, evaluate

    sim = Path(__file__).resolve().parents[1] / "fixtures" / "sim_sample"
    files = sorted(str(path) for path in sim.glob("*.jsonl"))
    config = EvalConfig(bench=files, out=str(tmp_path / "run"), backend="nano", image_root=str(sim / "images"),
                        bootstrap=0, plots=False, options=BackendOptions(device="cpu"))  # fmt: skip
    outcome = evaluate(config, progress=False)
    rows = [json.loads(line) for line in (Path(outcome.out) / "results.jsonl").read_text().splitlines()]
    name = f"progresslm-nano@{nano.weights_id(nano.NANO_DIR)}"  # a new release's weights: a new run identity
    assert len(rows) == 6 and all(row["model"] == name for row in rows)
    parsed = [parse_two_stage(row["reply"]) for row in rows]
    assert all(p.status is not Status.PARSE_FAILURE for p in parsed), [row["reply"] for row in rows]


def test_export_copies_a_full_model_without_training_state(tiny_vlm_dir, tmp_path):
    source = tmp_path / "trained"
    import shutil

    shutil.copytree(tiny_vlm_dir, source)
    (source / "checkpoint-5").mkdir()
    (source / "optimizer.pt").write_bytes(b"x")
    out = tmp_path / "exported"
    assert main(["train", "export", "--model", str(source), "--out", str(out)]) == 0
    names = {path.name for path in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "export.json" in names
    assert "checkpoint-5" not in names and "optimizer.pt" not in names
    backend = create_backend("hf", BackendOptions(model=str(out), device="cpu"), "two-stage")
    assert backend.model is not None
    assert main(["train", "export", "--model", str(tmp_path / "nothing"), "--out", str(out)]) == 2
