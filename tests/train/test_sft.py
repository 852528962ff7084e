"""LoRA SFT with TRL on the tiny random-init Qwen2.5-VL (CPU, offline): it learns, it trains on the
reply only, it resumes, and what it writes loads in the evaluation backend as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture, write_images

pytest.importorskip("trl")
pytest.importorskip("peft")

from progresslm.backends.base import BackendOptions, Request  # noqa: E402
from progresslm.bench.format import load_bench  # noqa: E402
from progresslm.images import ImageStore  # noqa: E402
from progresslm.prompts import build_prompt  # noqa: E402
from progresslm.train.recipes import load_recipe  # noqa: E402
from progresslm.train.sft import build_sft_trainer, fit, run_sft  # noqa: E402

CONFIG = Path(__file__).parents[2] / "configs" / "sft_tiny_cpu.yaml"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The fixture benchmark with small images, as (samples, image root, recipe overrides)."""
    root = tmp_path_factory.mktemp("images")
    files = [str(fixture(name)) for name in BENCH_FILES]
    samples = load_bench(files).samples
    write_images(samples, root)
    return samples, root, [f"data.files={files}", f"data.image_root={root}"]


def tiny_recipe(model: Path, bench, out: Path, *overrides: str):
    return load_recipe(CONFIG, [f"model={model}", *bench[2], f"output_dir={out}", *overrides])


@pytest.fixture(scope="module")
def trained(tiny_vlm_dir, bench, tmp_path_factory):
    """Sixteen steps on one repeated batch of two samples, with the trainable weights before training."""
    out = tmp_path_factory.mktemp("sft")
    recipe = tiny_recipe(
        tiny_vlm_dir, bench, out, "data.max_samples=2", "batch_size=2", "per_device_batch_size=2",
        "max_steps=16", "learning_rate=1e-2", "lr_scheduler=constant", "warmup_ratio=0", "logging_steps=1",
        "save_steps=100",
    )  # fmt: skip
    run = build_sft_trainer(recipe)
    before = {name: p.detach().clone() for name, p in run.trainer.model.named_parameters() if p.requires_grad}
    fit(run)
    return run, before


def test_training_changes_every_lora_weight_and_lowers_the_loss(trained):
    run, before = trained
    after = dict(run.trainer.model.named_parameters())
    assert before and all("lora_" in name for name in before)
    unchanged = [name for name, value in before.items() if (after[name] - value).abs().max() == 0]
    assert not unchanged
    losses = [entry["loss"] for entry in run.trainer.state.log_history if "loss" in entry]
    # A random model starts near ln(vocabulary) and LoRA's B starts at zero: the drop is steady but small.
    assert len(losses) == 16 and losses[-1] < losses[0] - 0.3
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2
    lines = (run.out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)] == list(range(1, 17))


def test_only_the_reply_is_trained_on(trained):
    run, _ = trained
    dataset, collator = run.trainer.train_dataset, run.trainer.data_collator
    rows = [dict(dataset[i]) for i in range(2)]
    replies = [row["completion"][0]["content"][0]["text"] for row in rows]
    batch = collator([dict(row) for row in rows])
    tokenizer = run.processor.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for row, reply in enumerate(replies):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        trained_positions = (labels != -100).nonzero().flatten()
        first = int(trained_positions[0])
        # Everything before the reply (system, user text, every image token) is masked ...
        assert (labels[:first] == -100).all() and (ids[:first] == image_pad).any()
        assert (labels[ids == image_pad] == -100).all()
        # ... and the trained tokens are exactly the reply and its end-of-turn token.
        text = tokenizer.decode(ids[trained_positions])
        assert text.startswith(reply) and text[len(reply) :].strip() == "<|im_end|>"


def test_output_holds_adapter_processor_and_recipe(trained):
    run, _ = trained
    names = {path.name for path in run.out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "recipe.yaml", "log.jsonl"} <= names
    assert {"processor_config.json", "tokenizer.json", "chat_template.jinja"} <= names
    adapter = json.loads((run.out / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]).is_absolute() and adapter["r"] == 8
    assert "learning_rate: 0.01" in (run.out / "recipe.yaml").read_text()


def _generate(model_dir: Path, samples, image_root: Path) -> list[str]:
    from progresslm.backends.hf_transformers import HFBackend

    backend = HFBackend(BackendOptions(model=str(model_dir), device="cpu", max_new_tokens=8, batch_size=2), "two-stage")
    store, requests = ImageStore(), []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", image_root)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil")))
    replies = dict(backend.generate(requests))
    return [replies[i].text for i in range(len(requests))]


def test_adapter_and_merged_export_load_in_the_eval_backend(trained, bench, tmp_path):
    from progresslm.cli import train as train_cli

    run, _ = trained
    samples, root, _ = bench
    from_adapter = _generate(run.out, samples[:2], root)
    assert len(from_adapter) == 2 and all(isinstance(text, str) for text in from_adapter)

    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "export", "--adapter", str(run.out), "--out", str(tmp_path / "merged")])
    assert args.handler(args) == 0
    merged = tmp_path / "merged"
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    assert (merged / "recipe.yaml").is_file()
    for card in (run.out / "README.md", merged / "README.md"):  # ours, never TRL's placeholder
        text = card.read_text()
        assert "fine-tuned version of [None]" not in text and "SFT with TRL, LoRA rank" in text
        assert str(Path(_base_of(run.out))) in text and "## Results" in text
    assert "Exported from" in (merged / "README.md").read_text()
    # The backend merges an adapter on load, so both give the same greedy answers.
    assert _generate(merged, samples[:2], root) == from_adapter


def _base_of(adapter_dir: Path) -> str:
    import json

    return json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def test_the_card_carries_the_figures_of_a_given_eval(tmp_path):
    import json

    from progresslm.train.model_card import model_card

    model = tmp_path / "model"
    model.mkdir()
    (model / "recipe.yaml").write_text("kind: grpo\nmodel: Qwen/Qwen2.5-VL-3B-Instruct\nlora: null\n"
                                       "data: {files: [rl/a.jsonl], mode: two-stage}\nbeta: 0.01\n")
    (model / "trainer_state.json").write_text(json.dumps({"global_step": 7, "log_history": [{"reward": 0.5}]}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"splits": {"visual_same_view": {"n": 10, "nse": 12.34, "prc": 80.0,
                                                  "afrr": 0.0}}, "demo_swap": {"all": {"changed": 91.0}}}))
    card = model_card(model, eval_run=run)
    assert "base_model: Qwen/Qwen2.5-VL-3B-Instruct" in card and "GRPO with TRL, full fine-tuning" in card
    assert "| visual_same_view | 10 | 12.3 | 80.0 | 0.0 | – |" in card and "91.0 %" in card
    assert "Trained 7 steps; last logged reward 0.5" in card


def test_export_of_a_full_model_dir_is_a_clear_error(tiny_vlm_dir, tmp_path, capsys):
    import argparse

    from progresslm.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "export", "--adapter", str(tiny_vlm_dir), "--out", str(tmp_path / "m")])
    assert args.handler(args) == 2
    assert "holds no adapter_config.json" in capsys.readouterr().err


def test_resume_continues_the_step_count(tiny_vlm_dir, bench, tmp_path, caplog):
    common = ["data.max_samples=4", "batch_size=2", "per_device_batch_size=2", "save_steps=1", "logging_steps=1"]
    out = run_sft(tiny_recipe(tiny_vlm_dir, bench, tmp_path, *common, "max_steps=2"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    caplog.set_level("INFO", logger="progresslm.train.trainer")
    run_sft(tiny_recipe(tiny_vlm_dir, bench, tmp_path, *common, "max_steps=4", "save_total_limit=null"))
    assert "resuming from" in caplog.text and "checkpoint-2 (step 2)" in caplog.text
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # One log line per step: the second run did steps 3 and 4 only, it did not start again at 1.
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s] == [1, 2, 2, 3, 4, 4]  # each run ends with a summary line at its last step
    assert {p.name for p in out.glob("checkpoint-*")} >= {"checkpoint-3", "checkpoint-4"}


def test_resume_false_with_old_checkpoints_is_refused(tiny_vlm_dir, bench, tmp_path):
    from progresslm.train.recipe_config import RecipeError

    (tmp_path / "checkpoint-7").mkdir()
    with pytest.raises(RecipeError, match="already holds checkpoint-7 and resume is false"):
        build_sft_trainer(tiny_recipe(tiny_vlm_dir, bench, tmp_path, "resume=false"))


def test_full_fine_tuning_saves_a_full_model_with_the_image_cap(tiny_vlm_dir, bench, tmp_path):
    from transformers import AutoProcessor

    recipe = tiny_recipe(
        tiny_vlm_dir, bench, tmp_path, "lora=false", "max_steps=1", "batch_size=2", "per_device_batch_size=2",
        "data.max_samples=2", "max_pixels=3136",
    )  # fmt: skip
    out = run_sft(recipe)
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert AutoProcessor.from_pretrained(out).image_processor.size["longest_edge"] == 3136
    assert "lora: false" in (out / "recipe.yaml").read_text()


def test_rows_without_images_fail_by_uid_before_the_model_loads(tiny_vlm_dir, bench, tmp_path, monkeypatch, capsys):
    import argparse

    import transformers

    from progresslm.cli import train as train_cli

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_loading)
    empty = tmp_path / "no-images"
    empty.mkdir()
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["train", "sft", "--config", str(CONFIG), f"model={tiny_vlm_dir}", *bench[2], f"data.image_root={empty}",
         f"output_dir={tmp_path / 'out'}"]
    )  # fmt: skip
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing image" in err and bench[0][0].uid in err


def test_lora_targets_that_match_nothing_are_a_recipe_error(tiny_vlm_dir, bench, tmp_path):
    from progresslm.train.recipe_config import RecipeError

    recipe = tiny_recipe(tiny_vlm_dir, bench, tmp_path, "lora.target_modules=[no_such_proj]", "data.max_samples=2",
                         "batch_size=2", "per_device_batch_size=2")  # fmt: skip
    with pytest.raises(RecipeError, match=r"^lora: PEFT cannot put a LoRA on this model.*no_such_proj.*target_modules"):
        build_sft_trainer(recipe)


def test_a_missing_local_model_fails_before_the_output_dir_is_written(bench, tmp_path, monkeypatch, capsys):
    import argparse

    from progresslm.cli import train as train_cli

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["train", "sft", "--config", str(CONFIG), "model=runs/sft-tiny", *bench[2],
                              f"output_dir={out}"])  # fmt: skip
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model: runs/sft-tiny does not exist on this machine") and "Traceback" not in err
    assert not out.exists()
