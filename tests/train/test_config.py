"""Training recipes: paper defaults, overrides, and errors that come before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import BENCH_FILES, fixture

from progresslm.train.config import GRPORecipe, RecipeError, SFTRecipe, load_recipe, save_recipe
from progresslm.train.sft import check_environment

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture
def data_overrides(tmp_path) -> list[str]:
    """Overrides pointing a recipe at the fixture benchmark, so file checks pass on any machine."""
    files = [str(fixture(name)) for name in BENCH_FILES]
    return [f"data.files={files}", f"data.image_root={tmp_path}", f"output_dir={tmp_path / 'out'}"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_papers():
    sft, grpo = SFTRecipe(), GRPORecipe()
    assert (sft.lora.rank, sft.lora.alpha, sft.lora.dropout, sft.lora.target_modules) == (8, 16, 0.05, "all-linear")
    assert (sft.learning_rate, sft.lr_scheduler, sft.warmup_ratio, sft.batch_size, sft.epochs, sft.bf16) == (
        1e-4, "cosine", 0.1, 64, 2.0, True,
    )  # fmt: skip
    assert (grpo.learning_rate, grpo.beta, grpo.num_generations, grpo.temperature, grpo.top_p) == (
        1e-6, 0.01, 16, 0.6, 0.9,
    )  # fmt: skip
    assert (grpo.batch_size, grpo.epochs, grpo.reward["weights"]) == (64, 2.0, [0.1, 0.6, 0.3])


@pytest.mark.parametrize("name, kind", [("sft_qwen2_5_vl_3b", "sft"), ("grpo_qwen2_5_vl_3b", "grpo")])
def test_shipped_3b_recipes_hold_the_paper_values(name, kind, data_overrides):
    recipe = load_recipe(CONFIGS / f"{name}.yaml", data_overrides, kind=kind)
    assert recipe.model.endswith("runs/sft-qwen2.5-vl-3b") or recipe.model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert recipe.bf16 and not recipe.use_cpu and recipe.lora.rank == 8 and recipe.batch_size == 64
    defaults = type(recipe)()
    assert (recipe.learning_rate, recipe.epochs) == (defaults.learning_rate, defaults.epochs)
    if kind == "grpo":
        assert (recipe.beta, recipe.num_generations, recipe.temperature, recipe.top_p) == (0.01, 16, 0.6, 0.9)
        assert recipe.reward["weights"] == [0.1, 0.6, 0.3]
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert all("sim-full-s0-v3" in path and "*" not in path for path in raw["data"]["files"])
    trl = pytest.importorskip("trl")
    from progresslm.train.sft import check_trl_overrides

    check_trl_overrides(recipe, trl.SFTConfig if kind == "sft" else trl.GRPOConfig)


@pytest.mark.parametrize("name, kind", [("sft_tiny_cpu", "sft"), ("grpo_tiny_cpu", "grpo")])
def test_tiny_recipes_run_on_the_cpu_in_fp32(name, kind, data_overrides):
    recipe = load_recipe(CONFIGS / f"{name}.yaml", data_overrides, kind=kind)
    assert recipe.use_cpu and not recipe.bf16 and recipe.max_steps <= 20


def test_the_kind_comes_from_the_caller_the_file_or_the_keys(data_overrides):
    assert isinstance(load_recipe(CONFIGS / "grpo_tiny_cpu.yaml", data_overrides), GRPORecipe)
    assert isinstance(load_recipe(CONFIGS / "sft_tiny_cpu.yaml", data_overrides), SFTRecipe)
    assert isinstance(load_recipe(None, [*data_overrides, "num_generations=4", "batch_size=8"]), GRPORecipe)
    assert isinstance(load_recipe(None, data_overrides), SFTRecipe)
    with pytest.raises(RecipeError, match="this is a grpo recipe; use it with `progresslm train grpo`"):
        load_recipe(CONFIGS / "grpo_tiny_cpu.yaml", data_overrides, kind="sft")


def test_overrides_are_yaml_values_at_any_depth(data_overrides):
    recipe = load_recipe(None, [*data_overrides, "learning_rate=2e-4", "lora.rank=16", "max_steps=5", "seed=3"])
    assert (recipe.learning_rate, recipe.lora.rank, recipe.lora.alpha, recipe.max_steps, recipe.seed) == (
        2e-4, 16, 16, 5, 3,
    )  # fmt: skip
    assert load_recipe(None, [*data_overrides, "lora=false"]).lora is None
    assert load_recipe(None, [*data_overrides, "lora=false", "lora.rank=4"]).lora.rank == 4
    grpo = load_recipe(None, [*data_overrides, "reward.false_na=-0.5", "reward.weights=[1, 6, 3]"], kind="grpo")
    assert grpo.reward == {"weights": [1, 6, 3], "false_na": -0.5}


def test_unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path):
    path = write(tmp_path, "model: x\nlearning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert "'learning_rat'" in message and f"{path}:2:" in message and "did you mean learning_rate" in message
    assert "Valid keys here:" in message and "per_device_batch_size" in message


def test_unknown_nested_key_and_override_suggest_the_right_one(tmp_path, data_overrides):
    with pytest.raises(RecipeError, match=r"'lora\.rnak'.*did you mean rank"):
        load_recipe(write(tmp_path, "lora:\n  rnak: 4\n"))
    with pytest.raises(RecipeError, match=r"^command line .*'data\.image_rot'.*did you mean image_root"):
        load_recipe(None, [*data_overrides, "data.image_rot=/x"])
    with pytest.raises(RecipeError, match=r"reward\.both_nan.*did you mean both_na"):
        load_recipe(None, [*data_overrides, "reward.both_nan=1"], kind="grpo")
    with pytest.raises(RecipeError, match="not key=value"):
        load_recipe(None, ["learning_rate"])


def test_wrong_types_say_what_was_expected(data_overrides):
    with pytest.raises(RecipeError, match="lora.rank must be int, got 'eight'"):
        load_recipe(None, [*data_overrides, "lora.rank=eight"])
    with pytest.raises(RecipeError, match="bf16 must be bool"):
        load_recipe(None, [*data_overrides, "bf16=3"])


@pytest.mark.parametrize(
    "overrides, kind, pattern",
    [
        (["bf16=true", "use_cpu=true"], "sft", r"bf16: .*use_cpu.*set bf16=false"),
        (["lora.rank=0"], "sft", r"lora\.rank: 0 is not a LoRA rank"),
        (["num_generations=3"], "grpo", r"num_generations: 3 does not divide batch_size 64"),
        (["num_generations=1", "batch_size=4", "per_device_batch_size=4"], "grpo", r"num_generations: 1 < 2"),
        (["batch_size=10", "per_device_batch_size=4"], "sft", r"batch_size: 10 is not a multiple"),
        (["use_vllm=true", "use_cpu=true", "bf16=false"], "grpo", r"use_vllm: vLLM rollouts need a GPU"),
        (["reward.weights=[1, 2]"], "grpo", r"reward\.weights: \[1, 2\] is not three numbers"),
        (["trl_overrides={learning_rate: 0.1}"], "sft", r"set learning_rate instead"),
        (["data.mode=fast"], "sft", r"data\.mode: unknown mode 'fast'"),
        (["top_p=0"], "grpo", r"top_p: 0.0 is not in \(0, 1\]"),
    ],
)
def test_impossible_combinations_say_what_why_and_how(overrides, kind, pattern, data_overrides):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(None, [*data_overrides, *overrides], kind=kind)


def test_missing_data_is_reported_before_anything_loads(tmp_path):
    with pytest.raises(RecipeError, match=r"data\.files: .*nowhere\.jsonl does not exist"):
        load_recipe(None, [f"data.files=[{tmp_path / 'nowhere.jsonl'}]", "output_dir=x"])
    with pytest.raises(RecipeError, match=r"data\.files: .*matches no file"):
        load_recipe(None, [f"data.files=[{tmp_path}/*.jsonl]", "output_dir=x"])
    with pytest.raises(RecipeError, match="data.files: no training data"):
        load_recipe(None, ["output_dir=x"])


def test_vllm_without_vllm_installed_fails_in_the_environment_check(monkeypatch, data_overrides):
    import importlib.util

    pytest.importorskip("torch")
    recipe = load_recipe(None, [*data_overrides, "use_vllm=true"], kind="grpo")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda: True)
    with pytest.raises(RecipeError, match="use_vllm: vLLM is not installed"):
        check_environment(recipe)


def test_a_gpu_recipe_on_a_cpu_machine_says_how_to_run_on_the_cpu(monkeypatch, data_overrides):
    pytest.importorskip("torch")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(RecipeError, match="use_cpu=true and bf16=false"):
        check_environment(load_recipe(None, data_overrides))


def test_gradient_accumulation_follows_the_number_of_processes(monkeypatch, data_overrides):
    recipe = load_recipe(None, [*data_overrides, "batch_size=64", "per_device_batch_size=4"])
    assert recipe.gradient_accumulation(1) == 16
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert recipe.gradient_accumulation() == 2
    with pytest.raises(RecipeError, match=r"4 x 32 = 128"):
        recipe.gradient_accumulation(32)


def test_the_saved_recipe_loads_back_as_the_same_recipe(tmp_path, data_overrides):
    recipe = load_recipe(None, [*data_overrides, "lora=false", "learning_rate=3e-5"], kind="grpo")
    path = save_recipe(recipe, tmp_path / "run")
    again = load_recipe(path, kind="grpo")
    assert again == recipe and again.lora is None
    with pytest.raises(RecipeError, match="this is a grpo recipe"):
        load_recipe(path, kind="sft")


def test_bad_trl_override_fails_before_any_model_loads(monkeypatch, tmp_path, data_overrides, capsys):
    import argparse

    pytest.importorskip("trl")
    import transformers

    from progresslm.cli import train as train_cli

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_loading)
    parser = argparse.ArgumentParser(prog="progresslm")
    train_cli.add_parser(parser.add_subparsers())
    argv = ["train", "sft", "--config", str(CONFIGS / "sft_tiny_cpu.yaml"), f"model={tmp_path}", *data_overrides]
    args = parser.parse_args([*argv, "trl_overrides={weight_decai: 0.1}"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "weight_decai" in err and "did you mean weight_decay" in err
    assert "Traceback" not in err
    args = parser.parse_args([*argv, "--dry-run"])
    assert args.handler(args) == 0
    assert "kind: sft" in capsys.readouterr().out
