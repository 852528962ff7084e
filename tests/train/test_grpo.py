"""GRPO with TRL on the tiny random-init Qwen2.5-VL (CPU, offline): the three rewards at their
weights, their logs, and continuing an SFT adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture, write_images

pytest.importorskip("trl")
pytest.importorskip("peft")

from progresslm.bench.format import load_bench  # noqa: E402
from progresslm.train.grpo import build_grpo_trainer, fit  # noqa: E402
from progresslm.train.recipes import load_recipe  # noqa: E402
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


def _reply(ref, score):
    return f"<ref_think>a</ref_think><ref>{ref}</ref><score_think>b</score_think><score>{score}</score>"


# uid -> (scripted completion, expected (format, ref, score)), worked out by hand (docs/protocol.md §6).
# None as the completion stands for the sample's own template trace (a perfect answer).
SCRIPTED = {
    "visual_same_view:2": (None, (1.0, 1.0, 1.0)),  # gt 3, 33%
    "visual_same_view:3": (_reply(4, "48%"), (1.0, 0.9375, 0.9)),  # gt 3, 58%, N 5: e = 1/4; |0.48 - 0.58|
    "visual_same_view:5": (_reply(2, "42%"), (1.0, 45 / 49, 1.0)),  # gt 4, 42%, N 8: e = 2/7
    "text-normal:3": (_reply("n/a", "n/a"), (0.0, 0.0, 0.0)),  # false N/A on an answerable row
    "visual-unanswerable:1": (None, (1.0, 1.0, 1.0)),  # both N/A
    "visual-unanswerable:2": (_reply("n/a", "40%"), (0.0, 0.0, 0.0)),  # the N/A-anchor hack
    "text-unanswerable:1": (_reply(2, "40%"), (0.0, 0.0, 0.0)),  # missed N/A
    "text-normal:1": ("I think 20%", (0.0, 0.0, 0.0)),  # no tags
}


def test_the_trainer_scores_scripted_completions_with_exact_component_values(tiny_vlm_dir, data_overrides, tmp_path):
    """The rewards as GRPOTrainer itself calls them (its _calculate_rewards, with the dataset rows
    as it passes them), on completions whose rewards are known: perfect, graded, N/A and broken."""
    from progresslm.train.traces import template_trace

    recipe = grpo_recipe(tiny_vlm_dir, data_overrides, tmp_path, "reward.weights=[1, 6, 3]")
    trainer = build_grpo_trainer(recipe).trainer
    samples = {sample.uid: sample for sample in load_bench([fixture(name) for name in BENCH_FILES]).samples}
    rows = {row["uid"]: row for row in trainer.train_dataset}
    inputs, prompts, completions, expected = [], [], [], []
    for uid, (text, values) in SCRIPTED.items():
        text = template_trace(samples[uid]) if text is None else text
        inputs.append(dict(rows[uid]))
        prompts.append(rows[uid]["prompt"])
        completions.append([{"role": "assistant", "content": text}])
        expected.append(values)
    ids = [[1, 2, 3]] * len(completions)
    rewards = trainer._calculate_rewards(inputs, prompts, completions, ids)

    assert rewards.shape == (len(SCRIPTED), 3)
    # Template traces state the score to a tenth of a percent: within 0.0005 of exact.
    assert rewards.tolist() == [pytest.approx(list(v), abs=5e-4) for v in expected]
    graded = list(SCRIPTED).index("visual_same_view:3")
    assert rewards[graded].tolist() == pytest.approx([1.0, 0.9375, 0.9], abs=1e-6)
    assert rewards[:, 1].sum() > 0 and rewards[:, 2].sum() > 0  # not the all-zero case of a random model
    weighted = (rewards * trainer.reward_weights).sum(dim=1)
    assert weighted[graded].item() == pytest.approx(1 + 6 * 0.9375 + 3 * 0.9, abs=1e-5)
    # The format function logged the batch's rates through TRL's log_metric hook.
    metrics = {name: values[-1] for name, values in trainer._pending_metrics.items()}
    assert metrics["format_rate"] == pytest.approx(7 / 8)  # well-formed, N/A or not: all but "I think 20%"
    assert metrics["hack_rate"] == pytest.approx(1 / 8)
    assert metrics["false_na_rate"] == pytest.approx(1 / 8) and metrics["missed_na_rate"] == pytest.approx(2 / 8)


def test_grpo_continues_an_sft_adapter_and_the_result_loads_for_evaluation(tiny_vlm_dir, data_overrides, tmp_path):
    from safetensors.torch import load_file

    from progresslm.backends.base import BackendOptions
    from progresslm.backends.hf_transformers import HFBackend

    sft_out = run_sft(
        load_recipe(
            CONFIGS / "sft_tiny_cpu.yaml",
            [f"model={tiny_vlm_dir}", *data_overrides, f"output_dir={tmp_path / 'sft'}", "max_steps=1",
             "batch_size=2", "per_device_batch_size=2", "data.max_samples=2", "warmup_ratio=0"],
        )
    )  # fmt: skip
    # lora.rank=4 is ignored: the SFT adapter (r=8) keeps training as it is.
    run = build_grpo_trainer(
        grpo_recipe(sft_out, data_overrides, tmp_path / "grpo", "max_steps=1", "data.max_samples=4", "lora.rank=4")
    )
    saved = load_file(str(sft_out / "adapter_model.safetensors"))
    start = {
        name.replace(".default", ""): param.detach().clone()
        for name, param in run.trainer.model.named_parameters()
        if "lora_" in name and param.requires_grad
    }
    assert set(start) == set(saved) and saved
    assert all(start[name].shape == saved[name].shape and (start[name] == saved[name]).all() for name in saved)
    assert any(name.endswith("lora_B.weight") and saved[name].abs().max() > 0 for name in saved)  # not a fresh LoRA
    assert all(value.shape[0] == 8 for name, value in saved.items() if "lora_A" in name)
    out = fit(run)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_vlm_dir).resolve())
    assert adapter["r"] == 8
    assert "rank: 4" in (out / "recipe.yaml").read_text()  # recorded as given, not used
    # The trained adapter loads on its base and changes what the model computes (the SFT LoRA is not zero), and the
    # backend answers a real prompt with it.
    import torch

    from progresslm.ask import Item, ask
    from progresslm.bench.format import read_official
    from progresslm.prompts import build_prompt

    backend = HFBackend(BackendOptions(model=str(out), device="cpu", max_new_tokens=4), "two-stage")
    base = HFBackend(BackendOptions(model=str(tiny_vlm_dir), device="cpu", max_new_tokens=4), "two-stage")
    ids = torch.arange(3, 19)[None]
    with torch.no_grad():
        tuned, untuned = backend.model(input_ids=ids).logits, base.model(input_ids=ids).logits
    assert tuned.shape == untuned.shape and tuned.shape[:2] == (1, 16) and not torch.equal(tuned, untuned)
    sample = read_official(fixture("visual_same_view")).samples[0]
    write_images([sample], tmp_path / "images")
    (answer,) = ask(backend, [Item(sample, build_prompt(sample, "two-stage", tmp_path / "images"))])
    assert answer.reply.error is None and answer.reply.completion_tokens


def test_a_bad_reward_setting_fails_before_the_model_loads(tiny_vlm_dir, data_overrides, tmp_path):
    from progresslm.train.recipe_config import RecipeError

    with pytest.raises(RecipeError, match=r"reward\.weights"):
        grpo_recipe(tiny_vlm_dir, data_overrides, tmp_path, "reward.weights=[0, 0, 0]")
