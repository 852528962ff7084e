"""Training recipes: paper defaults, overrides, and errors that come before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import BENCH_FILES, fixture

from progresslm.train.grpo_config import GRPORecipe
from progresslm.train.recipe_config import RecipeError
from progresslm.train.recipes import load_recipe, save_recipe
from progresslm.train.sft_config import SFTRecipe
from progresslm.train.trainer import check_environment

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
    assert all("sim-full-s0-v4" in path and "*" not in path for path in raw["data"]["files"])
    trl = pytest.importorskip("trl")
    from progresslm.train.trainer import check_trl_overrides

    check_trl_overrides(recipe, trl.SFTConfig if kind == "sft" else trl.GRPOConfig)


@pytest.mark.parametrize("name, kind", [("sft_tiny_cpu", "sft"), ("grpo_tiny_cpu", "grpo")])
def test_tiny_recipes_run_on_the_cpu_in_fp32(name, kind, data_overrides):
    recipe = load_recipe(CONFIGS / f"{name}.yaml", data_overrides, kind=kind)
    assert recipe.use_cpu and not recipe.bf16 and recipe.max_steps <= 20


@pytest.mark.parametrize("name, kind", [("nano_sft", "sft"), ("nano_grpo", "grpo")])
def test_nano_recipes_train_from_scratch_on_the_cpu(name, kind, data_overrides):
    with pytest.raises(RecipeError, match=r"data.hints_model: .* holds no matcher"):
        load_recipe(CONFIGS / f"{name}.yaml", [*data_overrides, "data.hints_model=runs/no-such-matcher"], kind=kind)
    # null: the matcher shipped in the package writes the hints (the recipes name `make nano`'s own)
    recipe = load_recipe(CONFIGS / f"{name}.yaml", [*data_overrides, "data.hints_model=null"], kind=kind)
    assert recipe.use_cpu and not recipe.bf16 and recipe.lora is None
    assert recipe.data.hints == "matcher" and recipe.freeze == ["model.vision_tower"]
    assert recipe.data.demo_cuts > 0 and recipe.data.swap_negatives > 0
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    split = "sft" if kind == "sft" else "rl"  # never the bench split
    assert all(f"sim-full-s0-v4/{split}/" in path for path in raw["data"]["files"])
    assert raw["data"]["hints_model"] == "runs/nano/matcher"
    if kind == "grpo":
        assert recipe.reward["weights"] == [0.1, 0.6, 0.3] and recipe.model == "runs/nano/sft-best"  # the checkpoint `train select` kept


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
        (["lora.rank=0"], "sft", r"lora\.rank: 0 is not a LoRA rank"),
        (["num_generations=3"], "grpo", r"num_generations: 3 does not divide batch_size 64"),
        (["num_generations=1", "batch_size=4", "per_device_batch_size=4"], "grpo", r"num_generations: 1 < 2"),
        (["batch_size=10", "per_device_batch_size=4"], "sft", r"batch_size: 10 is not a multiple"),
        (["use_vllm=true", "use_cpu=true", "bf16=false"], "grpo", r"use_vllm: vLLM rollouts need a GPU"),
        (["reward.weights=[1, 2]"], "grpo", r"reward\.weights: \[1, 2\] is not three numbers"),
        (["trl_overrides={learning_rate: 0.1}"], "sft", r"set learning_rate instead"),
        (["data.mode=fast"], "sft", r"data\.mode: unknown mode 'fast'"),
        (["top_p=0"], "grpo", r"top_p: 0.0 is not in \(0, 1\]"),
        (["data.trace_style=long"], "sft", r"data\.trace_style: unknown style 'long'.*full, short"),
        (["data.demo_cuts=-0.5"], "sft", r"data\.demo_cuts: -0.5 is negative"),
        (["data.swap_negatives=-1"], "grpo", r"data\.swap_negatives: -1.0 is negative"),
        (["data.self_demos=-2"], "sft", r"data\.self_demos: -2.0 is negative"),
    ],
)
def test_impossible_combinations_say_what_why_and_how(overrides, kind, pattern, data_overrides):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(None, [*data_overrides, *overrides], kind=kind)


def test_grpo_needs_two_stage_and_traces_need_two_stage(tmp_path, data_overrides):
    with pytest.raises(RecipeError) as error:
        load_recipe(None, [*data_overrides, "data.mode=direct"], kind="grpo")
    message = str(error.value)
    assert "data.mode: GRPO with mode 'direct'" in message and "rewards read two-stage replies" in message
    assert "use data.mode=two-stage for GRPO" in message
    assert load_recipe(None, [*data_overrides, "data.mode=direct"], kind="sft").data.mode == "direct"
    traces = tmp_path / "traces.jsonl"
    traces.write_text("")
    with pytest.raises(
        RecipeError,
        match=r"data\.mode: reasoning traces are two-stage replies but data\.mode is "
        r"'direct'.*use data\.mode=two-stage with data\.traces",
    ):
        load_recipe(None, [*data_overrides, "data.mode=direct", f"data.traces=[{traces}]"], kind="sft")
    assert load_recipe(None, [*data_overrides, f"data.traces=[{traces}]"], kind="sft").data.traces == [str(traces)]


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


@pytest.mark.parametrize(
    "overrides, kind, pattern",
    [
        (["lr_scheduler=cosin"], "sft", r"lr_scheduler: transformers has no scheduler 'cosin' \(did you mean cosine"),
        (["report_to=wandbb"], "sft", r"report_to: transformers cannot report to 'wandbb' \(did you mean wandb"),
        (["report_to=[none, tensorbord]"], "grpo", r"report_to: .*'tensorbord'"),
        (["trl_overrides={save_strategy: sometimes}"], "sft", r"trl\.SFTConfig rejects the recipe: .*sometimes"),
        (
            [
                "trl_overrides={generation_batch_size: 3}",
                "num_generations=2",
                "batch_size=4",
                "per_device_batch_size=4",
            ],
            "grpo",
            r"trl\.GRPOConfig rejects the recipe: generation_batch_size \(3\) must be divisible",
        ),
    ],
)
def test_names_and_values_transformers_rejects_fail_in_the_trl_check(overrides, kind, pattern, data_overrides):
    trl = pytest.importorskip("trl")
    from progresslm.train.trainer import check_trl_overrides

    recipe = load_recipe(None, [*data_overrides, *overrides], kind=kind)  # the file-only checks pass
    with pytest.raises(RecipeError, match=pattern):
        check_trl_overrides(recipe, trl.SFTConfig if kind == "sft" else trl.GRPOConfig)


def test_the_trl_check_returns_the_config_it_built(data_overrides):
    trl = pytest.importorskip("trl")
    from progresslm.train.trainer import check_trl_overrides

    recipe = load_recipe(CONFIGS / "sft_tiny_cpu.yaml", [*data_overrides, "trl_overrides={weight_decay: 0.05}"])
    config = check_trl_overrides(recipe, trl.SFTConfig)
    assert isinstance(config, trl.SFTConfig) and config.weight_decay == 0.05 and config.completion_only_loss


def test_report_to_an_integration_that_is_not_installed_fails_in_the_environment_check(monkeypatch, data_overrides):
    pytest.importorskip("transformers")
    import transformers.integrations.integration_utils as integrations

    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    recipe = load_recipe(CONFIGS / "sft_tiny_cpu.yaml", [*data_overrides, "report_to=wandb"])
    with pytest.raises(RecipeError, match="report_to: wandb is not installed.*report_to=none"):
        check_environment(recipe)
    check_environment(load_recipe(CONFIGS / "sft_tiny_cpu.yaml", [*data_overrides, "report_to=tensorboard"]))


@pytest.mark.parametrize("model", ["runs/sft-nowhere", "./nowhere", "../nowhere", "~/nowhere-model-dir", "/nowhere/x"])
def test_a_missing_local_model_is_a_recipe_error_not_a_hub_lookup(model, tmp_path, monkeypatch):
    from progresslm.train.models import resolve_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match=rf"model: {model} does not exist on this machine.*progresslm train sft"):
        resolve_model(model)


def test_local_or_hub_is_decided_by_the_first_path_component(tmp_path, monkeypatch):
    from progresslm.train.models import looks_local, resolve_model

    monkeypatch.chdir(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"  # no ./Qwen here: a hub id
    (tmp_path / "models").mkdir()
    assert looks_local("models/qwen") and not looks_local("Qwen/Qwen2.5-VL-3B-Instruct")
    with pytest.raises(RecipeError, match="model: models/qwen does not exist on this machine"):
        resolve_model("models/qwen")
    (tmp_path / "models" / "qwen").mkdir()
    (tmp_path / "models" / "qwen" / "config.json").write_text("{}")
    assert resolve_model("models/qwen") == str((tmp_path / "models" / "qwen").resolve())


def test_unloadable_model_directories_are_recipe_errors(tmp_path):
    pytest.importorskip("transformers")
    import torch

    from progresslm.train.models import load_model, load_processor

    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(RecipeError, match=f"model: cannot load the weights of {tmp_path}"):
        load_model(str(tmp_path), torch.float32)
    with pytest.raises(RecipeError, match=f"model: cannot load the processor of {tmp_path}"):
        load_processor(str(tmp_path))


@pytest.mark.parametrize(
    "order",
    [
        ["--config", "C", "--dry-run", "O"],
        ["--dry-run", "--config", "C", "O"],
        ["--config", "C", "O1", "--dry-run", "O2"],
        ["O", "--config", "C", "--dry-run"],
        ["O1", "--dry-run", "O2", "--config=C"],
    ],
)
def test_dry_run_and_config_may_be_intermixed_with_overrides(order, data_overrides, capsys):
    """Through the real `progresslm` parser (main.py calls parse_args)."""
    pytest.importorskip("trl")
    from progresslm.cli.main import main

    overrides = [*data_overrides, "learning_rate=3e-4"]
    half = len(overrides) // 2
    argv = []
    for item in order:
        if item == "C":
            argv.append(str(CONFIGS / "sft_tiny_cpu.yaml"))
        elif item == "--config=C":
            argv.append(f"--config={CONFIGS / 'sft_tiny_cpu.yaml'}")
        elif item == "O":
            argv.extend(overrides)
        elif item == "O1":
            argv.extend(overrides[:half])
        elif item == "O2":
            argv.extend(overrides[half:])
        else:
            argv.append(item)
    assert main(["train", "sft", *argv]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["kind"] == "sft" and printed["learning_rate"] == 3e-4
    assert printed["output_dir"] == data_overrides[-1].partition("=")[2]


def test_dry_run_runs_the_trl_checks_and_reports_cli_mistakes(data_overrides, capsys):
    pytest.importorskip("trl")
    from progresslm.cli.main import main

    config = str(CONFIGS / "grpo_tiny_cpu.yaml")
    assert main(["train", "grpo", "--dry-run", "--config", config, *data_overrides, "lr_scheduler=cosin"]) == 2
    assert "lr_scheduler: transformers has no scheduler 'cosin'" in capsys.readouterr().err
    bad_trl = "trl_overrides={generation_batch_size: 3}"
    assert main(["train", "grpo", "--config", config, *data_overrides, "--dry-run", bad_trl]) == 2
    assert "trl.GRPOConfig rejects the recipe" in capsys.readouterr().err
    assert main(["train", "grpo", *data_overrides, "--dry-run"]) == 2
    assert "--config FILE is required" in capsys.readouterr().err
    assert main(["train", "grpo", "--config", config, *data_overrides, "--dryrun"]) == 2
    assert "unknown option --dryrun" in capsys.readouterr().err


def test_data_paths_expand_home_variables_defaults_and_globs(tmp_path, monkeypatch):
    from progresslm.io import expand_files, expand_path, image_root_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLM_TEST_DIR", raising=False)
    assert expand_path("${PLM_TEST_DIR:-~/cache}/a.jsonl") == str(tmp_path / "home" / "cache" / "a.jsonl")
    monkeypatch.setenv("PLM_TEST_DIR", "")  # empty counts as unset, as in a shell
    assert expand_path("${PLM_TEST_DIR:-~/cache}/a") == str(tmp_path / "home" / "cache" / "a")
    monkeypatch.setenv("PLM_TEST_DIR", str(tmp_path / "d"))
    assert expand_path("${PLM_TEST_DIR:-~/cache}/a") == expand_path("$PLM_TEST_DIR/a") == str(tmp_path / "d" / "a")
    assert image_root_path("${PLM_TEST_DIR}/images") == str(tmp_path / "d" / "images") and image_root_path(None) is None
    (tmp_path / "d").mkdir()
    for name in ("b.jsonl", "a.jsonl"):
        (tmp_path / "d" / name).write_text("")
    assert expand_files(["$PLM_TEST_DIR/*.jsonl"]) == [tmp_path / "d" / "a.jsonl", tmp_path / "d" / "b.jsonl"]


@pytest.mark.parametrize("name", ["sft_tiny_cpu", "grpo_tiny_cpu"])
@pytest.mark.parametrize("where", ["PROGRESSLM_HOME", "HOME"])
def test_tiny_recipes_follow_progresslm_home(name, where, tmp_path, monkeypatch):
    """The tiny recipes find the example benchmark wherever `progresslm bench example` put it."""
    import shutil

    base = tmp_path / "plm" if where == "PROGRESSLM_HOME" else tmp_path / "home" / ".cache" / "progresslm"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if where == "PROGRESSLM_HOME":
        monkeypatch.setenv("PROGRESSLM_HOME", str(base))
    else:
        monkeypatch.delenv("PROGRESSLM_HOME", raising=False)
    example = base / "example-v1"
    (example / "images").mkdir(parents=True)
    traces = tmp_path / "traces.jsonl"
    traces.write_text("")
    # Without the data, the error names the recipe path and what it expanded to.
    with pytest.raises(RecipeError, match=rf"data\.files: .*\(= {example}/visual_same_view\.jsonl\) does not exist"):
        load_recipe(CONFIGS / f"{name}.yaml", ["output_dir=x"])
    for file in BENCH_FILES:
        shutil.copy(fixture(file), example / f"{file}.jsonl")
    recipe = load_recipe(CONFIGS / f"{name}.yaml", ["output_dir=x"])  # no data overrides needed
    from progresslm.io import expand_files, image_root_path

    assert expand_files(recipe.data.files) == [example / f"{file}.jsonl" for file in BENCH_FILES]
    assert image_root_path(recipe.data.image_root) == str(example / "images")
    if name.startswith("sft"):  # traces use the same expansion
        monkeypatch.setenv("PLM_TRACES", str(traces))
        assert load_recipe(CONFIGS / f"{name}.yaml", ["output_dir=x", "data.traces=[$PLM_TRACES]"]).data.traces


def test_the_grpo_objective_is_pinned_recorded_and_passed_to_trl(tmp_path, data_overrides):
    trl = pytest.importorskip("trl")
    import dataclasses

    from progresslm.train.grpo_config import LOSS_TYPES, SCALE_REWARDS
    from progresslm.train.trainer import check_trl_overrides

    recipe = load_recipe(None, data_overrides, kind="grpo")
    assert (recipe.loss_type, recipe.scale_rewards) == ("grpo", "group")
    saved = yaml.safe_load(save_recipe(recipe, tmp_path / "run").read_text())
    assert (saved["loss_type"], saved["scale_rewards"]) == ("grpo", "group")
    config = check_trl_overrides(recipe, trl.GRPOConfig)
    assert (config.loss_type, config.scale_rewards) == ("grpo", "group")
    defaults = {f.name: f.default for f in dataclasses.fields(trl.GRPOConfig)}
    assert defaults["loss_type"] != "grpo"  # TRL's own default differs: the pin matters
    other = load_recipe(None, [*data_overrides, "loss_type=dr_grpo", "scale_rewards=none"], kind="grpo")
    assert (check_trl_overrides(other, trl.GRPOConfig).loss_type, other.scale_rewards) == ("dr_grpo", "none")
    # Our lists are TRL's accepted values.
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(trl.GRPOConfig)}
    assert all(f"'{value}'" in helps["loss_type"] for value in LOSS_TYPES)
    assert all(f"{value}'" in helps["scale_rewards"] for value in SCALE_REWARDS)  # TRL writes `group'`
    for shipped in ("grpo_tiny_cpu", "grpo_qwen2_5_vl_3b"):
        raw = yaml.safe_load((CONFIGS / f"{shipped}.yaml").read_text())
        assert (raw["loss_type"], raw["scale_rewards"]) == ("grpo", "group")
    with pytest.raises(RecipeError, match=r"loss_type: TRL has no loss 'ppo'; use one of grpo, dr_grpo"):
        load_recipe(None, [*data_overrides, "loss_type=ppo"], kind="grpo")
    with pytest.raises(RecipeError, match=r"scale_rewards: unknown scaling 'std'"):
        load_recipe(None, [*data_overrides, "scale_rewards=std"], kind="grpo")
    with pytest.raises(RecipeError, match=r"trl_overrides\.loss_type: .*set loss_type instead"):
        load_recipe(None, [*data_overrides, "trl_overrides={loss_type: dapo}"], kind="grpo")


def test_the_documented_vllm_override_keeps_the_recipes_other_trl_overrides(data_overrides):
    docs = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    assert "trl_overrides.vllm_gpu_memory_utilization=0.3" in docs and "opt-in" in docs
    recipe = load_recipe(
        CONFIGS / "grpo_qwen2_5_vl_3b.yaml",
        [*data_overrides, "use_vllm=true", "trl_overrides.vllm_gpu_memory_utilization=0.3"],
        kind="grpo",
    )
    assert recipe.trl_overrides == {"dataloader_num_workers": 4, "vllm_gpu_memory_utilization": 0.3}
    assert GRPORecipe().use_vllm is False  # opt-in


def test_bf16_on_the_cpu_is_refused_only_where_the_cpu_lacks_bfloat16(monkeypatch, data_overrides):
    """The full-size dry run trains the 3B recipes on the CPU in their own bf16: on CPUs with AVX512-BF16 or AMX a
    bf16 matmul ran 9x faster than fp32 there, and the frozen base takes half the memory (7 instead of 14 GB)."""
    pytest.importorskip("torch")
    recipe = load_recipe(None, [*data_overrides, "bf16=true", "use_cpu=true"])
    assert recipe.bf16 and recipe.use_cpu
    monkeypatch.setattr("progresslm.train.trainer.cpu_has_bf16", lambda: True)
    check_environment(recipe)
    monkeypatch.setattr("progresslm.train.trainer.cpu_has_bf16", lambda: False)
    with pytest.raises(RecipeError, match=r"bf16: .*use_cpu.*no native bfloat16.*set bf16=false"):
        check_environment(recipe)
