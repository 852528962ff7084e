"""GRPO with TRL on the tiny random-init Qwen2.5-VL (CPU, offline): the three rewards at their
weights, their logs, and continuing an SFT adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture, write_images

pytest.importorskip("trl")
pytest.importorskip("peft")

from progresslm.official import load_bench  # noqa: E402
from progresslm.train.config import load_recipe  # noqa: E402
from progresslm.train.grpo import build_grpo_trainer, fit, run_grpo  # noqa: E402
from progresslm.train.sft import run_sft  # noqa: E402

CONFIGS = Path(__file__).parents[2] / "configs"
REWARD_KEYS = [f"rewards/{name}/mean" for name in ("format", "ref", "score")]
RATE_KEYS = ["format_rate", "na_rate", "hack_rate", "false_na_rate", "missed_na_rate"]


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("images")
    files = [str(fixture(name)) for name in BENCH_FILES]
    write_images(load_bench(files).samples, root)
    return [f"data.files={files}", f"data.image_root={root}"]


def grpo_recipe(model, data_overrides, out, *overrides):
    small = ["batch_size=4", "per_device_batch_size=4", "num_generations=2", "max_completion_length=12"]
    return load_recipe(
        CONFIGS / "grpo_tiny_cpu.yaml",
        [f"model={model}", *data_overrides, f"output_dir={out}", *small, *overrides],
        kind="grpo",
    )


def test_two_steps_with_all_three_rewards_logged(tiny_vlm_dir, data_overrides, tmp_path):
    recipe = grpo_recipe(tiny_vlm_dir, data_overrides, tmp_path, "max_steps=2", "reward.weights=[1, 6, 3]")
    run = build_grpo_trainer(recipe)
    trainer = run.trainer
    assert trainer.reward_func_names == ["format", "ref", "score"]
    assert trainer.reward_weights.tolist() == [1.0, 6.0, 3.0]
    assert (trainer.args.num_generations, trainer.args.beta, trainer.args.temperature, trainer.args.top_p) == (
        2, 0.01, 0.6, 0.9,
    )  # fmt: skip
    out = fit(run)

    steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        assert set(REWARD_KEYS + RATE_KEYS) <= set(entry)
        assert all(0.0 <= entry[key] <= 1.0 for key in REWARD_KEYS + RATE_KEYS)
        # TRL's total is the weighted sum of the logged components.
        weighted = sum(w * entry[k] for w, k in zip((1, 6, 3), REWARD_KEYS))
        assert entry["reward"] == pytest.approx(weighted, abs=1e-5)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(key in logged[0] for key in REWARD_KEYS + RATE_KEYS)
    assert (out / "adapter_config.json").is_file() and (out / "processor_config.json").is_file()
    assert "num_generations: 2" in (out / "recipe.yaml").read_text()


def test_grpo_continues_an_sft_adapter_and_the_result_loads_for_evaluation(tiny_vlm_dir, data_overrides, tmp_path):
    from progresslm.backends.base import BackendOptions
    from progresslm.backends.hf import HFBackend

    sft_out = run_sft(
        load_recipe(
            CONFIGS / "sft_tiny_cpu.yaml",
            [f"model={tiny_vlm_dir}", *data_overrides, f"output_dir={tmp_path / 'sft'}", "max_steps=1",
             "batch_size=2", "per_device_batch_size=2", "data.max_samples=2"],
        )
    )  # fmt: skip
    out = run_grpo(grpo_recipe(sft_out, data_overrides, tmp_path / "grpo", "max_steps=1", "data.max_samples=4"))
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_vlm_dir).resolve())
    assert adapter["r"] == 8
    backend = HFBackend(BackendOptions(model=str(out), device="cpu", max_new_tokens=4), "two-stage")
    assert backend.model is not None


def test_a_bad_reward_setting_fails_before_the_model_loads(tiny_vlm_dir, data_overrides, tmp_path):
    from progresslm.train.config import RecipeError

    with pytest.raises(RecipeError, match=r"reward\.weights"):
        grpo_recipe(tiny_vlm_dir, data_overrides, tmp_path, "reward.weights=[0, 0, 0]")
