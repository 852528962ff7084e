"""`progresslm train sft`: LoRA (or full) supervised fine-tuning with TRL's SFTTrainer.

The training rows come from `progresslm.train.data.sft_records` (the evaluation prompt builder plus
a reasoning trace) and are handed to TRL as prompt/completion pairs: system and user messages as
the prompt, the assistant reply as the completion. For that form TRL's vision collator masks the
prompt (labels -100) and trains on the reply and its end-of-turn token only. (`assistant_only_loss`
on `messages` would need a chat template with generation markers, and TRL computes that mask
before the image tokens are expanded.)

The end of a run leaves in `output_dir`: the adapter (or the full model), the processor, the
resolved recipe, `log.jsonl` (one line per logging step) and `trainer_state.json`, so
`progresslm eval --backend hf --model OUTPUT_DIR` works as it is. Checkpoints (`checkpoint-N`)
hold the optimizer state; a rerun of the same command continues from the newest.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progresslm.train.config import (
    GRPORecipe,
    LoraSettings,
    RecipeError,
    SFTRecipe,
    _Recipe,
    expand_files,
    expand_path,
    image_root_path,
    save_recipe,
)

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"


# -- shared with grpo.py ------------------------------------------------------------------------


def check_trl_overrides(recipe: _Recipe, config_class: type):
    """The checks that need transformers and TRL (imports them, loads no model): `lr_scheduler` and
    `report_to` against the names transformers accepts, `trl_overrides` keys against TRL's config
    class, then the config itself built from the recipe, its own validation turned into a
    RecipeError. Returns that config.

    The device settings (`bf16`, `use_cpu`) are this machine's business (`check_environment`): on a
    machine without CUDA a GPU recipe is checked as if for the CPU, so a dry run on a laptop still
    checks everything else."""
    check_transformers_names(recipe)
    valid = [f.name for f in dataclasses.fields(config_class) if f.init]
    for key in recipe.trl_overrides:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise RecipeError(f"unknown key 'trl_overrides.{key}': trl.{config_class.__name__} has no such field{hint}")
    args = recipe_trl_args(recipe, Path(recipe.output_dir).expanduser())
    if not recipe.use_cpu and not _cuda_available():
        args.update(use_cpu=True, bf16=False)
    return build_trl_config(config_class, args)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_trl_config(config_class: type, args: dict[str, Any]):
    """`config_class(**args)`, with TRL's and transformers' own checks reported as a RecipeError."""
    try:
        return config_class(**args)
    except (ValueError, TypeError, KeyError, ImportError) as error:
        raise RecipeError(
            f"trl.{config_class.__name__} rejects the recipe: {str(error).rstrip('.')}. "
            "Fix the recipe key or trl_overrides entry it names"
        ) from error


def recipe_trl_args(recipe: _Recipe, out: Path) -> dict[str, Any]:
    """Every argument of the recipe's TRL config (SFTConfig or GRPOConfig)."""
    if isinstance(recipe, GRPORecipe):
        from progresslm.train.grpo import grpo_trl_args

        return grpo_trl_args(recipe, out)
    return sft_trl_args(recipe, out)


def check_transformers_names(recipe: _Recipe) -> None:
    """`lr_scheduler` and `report_to` are names transformers knows (else the Trainer fails late)."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType

    schedulers = [scheduler.value for scheduler in SchedulerType]
    if recipe.lr_scheduler not in schedulers:
        close = difflib.get_close_matches(recipe.lr_scheduler, schedulers, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise RecipeError(
            f"lr_scheduler: transformers has no scheduler {recipe.lr_scheduler!r}{hint}; "
            f"use one of {', '.join(schedulers)}"
        )
    reporters = [recipe.report_to] if isinstance(recipe.report_to, str) else list(recipe.report_to)
    valid = ["none", "all", *INTEGRATION_TO_CALLBACK]
    for name in reporters:
        if name not in valid:
            close = difflib.get_close_matches(str(name), valid, n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise RecipeError(
                f"report_to: transformers cannot report to {name!r}{hint}; use none, all or any of "
                f"{', '.join(INTEGRATION_TO_CALLBACK)}"
            )


def check_environment(recipe: _Recipe) -> None:
    """Checks that need this machine: CUDA and bf16 support, vLLM installed. Loads no model."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() and not recipe.use_cpu
    if not cuda and not recipe.use_cpu:
        raise RecipeError(
            "no CUDA GPU is visible: the recipe would silently train on the CPU; "
            "set use_cpu=true and bf16=false for a CPU run, or run on a GPU machine"
        )
    if recipe.bf16 and cuda and not torch.cuda.is_bf16_supported():
        raise RecipeError(
            "bf16: this GPU has no bfloat16 support (pre-Ampere); set bf16=false and "
            "trl_overrides.fp16=true, or use an Ampere or newer GPU"
        )
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    reporters = [recipe.report_to] if isinstance(recipe.report_to, str) else list(recipe.report_to)
    installed = get_available_reporting_integrations()
    for name in reporters:
        if name not in ("none", "all") and name not in installed:
            raise RecipeError(
                f"report_to: {name} is not installed on this machine, so transformers cannot report to it; "
                f"pip install {name} or set report_to=none"
            )
    if isinstance(recipe, GRPORecipe) and recipe.use_vllm and importlib.util.find_spec("vllm") is None:
        raise RecipeError(
            "use_vllm: vLLM is not installed, so TRL cannot use it for rollouts; "
            "pip install 'progresslm[vllm]' or set use_vllm=false (plain transformers generation)"
        )


def prepare_output_dir(recipe: _Recipe) -> tuple[Path, str | None]:
    """The output directory and the checkpoint to resume from (None: start fresh)."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(recipe.output_dir).expanduser()
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    if checkpoint and not recipe.resume:
        raise RecipeError(
            f"output_dir {out} already holds {Path(checkpoint).name} and resume is false: a fresh run would mix its "
            "checkpoints with the old ones; set resume=true to continue, or choose another output_dir"
        )
    return out, checkpoint


def common_trl_args(recipe: _Recipe, out: Path) -> dict[str, Any]:
    """The TRL/transformers arguments every recipe sets, then the recipe's `trl_overrides`."""
    args: dict[str, Any] = {
        "output_dir": str(out),
        "learning_rate": recipe.learning_rate,
        "lr_scheduler_type": recipe.lr_scheduler,
        "warmup_steps": recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps
        "per_device_train_batch_size": recipe.per_device_batch_size,
        "gradient_accumulation_steps": recipe.gradient_accumulation(),
        "num_train_epochs": recipe.epochs,
        "max_steps": recipe.max_steps if recipe.max_steps is not None else -1,
        "bf16": recipe.bf16,
        _checkpointing_key(): recipe.gradient_checkpointing,
        "save_strategy": "steps",
        "save_steps": recipe.save_steps,
        "save_total_limit": recipe.save_total_limit,
        "logging_steps": recipe.logging_steps,
        "seed": recipe.seed,
        "use_cpu": recipe.use_cpu,
        "report_to": recipe.report_to,
        # Our datasets carry extra columns (uid, images, labels); the collator and rewards pick what they need.
        "remove_unused_columns": False,
    }
    args.update(recipe.trl_overrides)
    return args


def sft_trl_args(recipe: SFTRecipe, out: Path) -> dict[str, Any]:
    """SFTConfig arguments: the common ones, SFT's own, then `trl_overrides`."""
    args = {
        **common_trl_args(recipe, out),
        "max_length": recipe.max_length,
        "completion_only_loss": True,
        "dataset_kwargs": {"skip_prepare_dataset": True},  # images: TRL tokenizes in the collator
    }
    args.update(recipe.trl_overrides)
    return args


def _checkpointing_key() -> str:
    """transformers 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def lora_config(lora: LoraSettings | None):
    """A PEFT LoraConfig for the recipe's LoRA settings; None for full fine-tuning."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def freeze_modules(model, prefixes: list[str]) -> list[str]:
    """Keep the modules named by `prefixes` as they are: no gradients, and eval mode (BatchNorm running
    statistics and dropout) at every forward, although the Trainer puts the whole model in train mode
    before each step. Returns the names frozen; a prefix that names no module is a RecipeError."""
    frozen = []
    for prefix in prefixes:
        matches = [(name, module) for name, module in model.named_modules() if name == prefix]
        if not matches:
            names = sorted({name.split(".")[0] + "." + name.split(".")[1] for name, _ in model.named_modules() if name.count(".") >= 1})
            raise RecipeError(f"freeze: the model has no module {prefix!r}; top-level modules: {', '.join(names[:12])}")
        for name, module in matches:
            module.requires_grad_(False)
            module.eval()
            module.register_forward_pre_hook(_stay_in_eval)
            frozen.append(name)
    if frozen:
        log.info("frozen (no gradient, eval mode): %s", ", ".join(frozen))
    return frozen


def _stay_in_eval(module, args) -> None:
    """Forward pre-hook of a frozen module: back to eval mode if the Trainer switched it to train mode."""
    if module.training:
        module.eval()


def prompt_hints(recipe: _Recipe, samples: list, image_root) -> dict[str, str] | None:
    """uid -> hints line for the recipe's `data.hints` (None when the recipe has none)."""
    data = recipe.data
    if data.hints in (None, "none"):
        return None
    from progresslm.nano.hints import HintError, HintProvider

    try:
        provider = HintProvider(expand_path(data.hints_model) if data.hints_model else None)
    except HintError as error:
        raise RecipeError(f"data.hints_model: {error}") from error
    hints = provider.hints(samples, image_root)
    log.info("matcher hints for %d of %d samples (%s)", len(hints), len(samples), provider.name)
    return hints


def model_dtype(recipe: _Recipe):
    """bf16 weights only for a frozen LoRA base: fully trained weights stay fp32 under bf16 autocast,
    since updates at lr 1e-6 are below bf16's resolution and would be lost."""
    import torch

    return torch.bfloat16 if recipe.bf16 and recipe.lora is not None else torch.float32


def jsonl_log(path: Path):
    """A TrainerCallback that appends every Trainer log (loss, lr, rewards, rates) to `path` as it
    happens, so a crash loses nothing and a run can be watched with `tail -f`."""
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs}
            with path.open("a") as handle:
                handle.write(json.dumps(row, default=float) + "\n")

    return JsonlLog()


@dataclass
class TrainerRun:
    """A trainer ready to train, with what `fit` needs to finish the run."""

    trainer: Any
    processor: Any
    recipe: _Recipe
    out: Path
    checkpoint: str | None  # the checkpoint to resume from, None for a fresh start


def fit(run: TrainerRun) -> Path:
    """Train (continuing from the run's checkpoint if any) and save what evaluation loads: the
    adapter or full model, the processor and the trainer state. Returns the output directory."""
    trainer, out = run.trainer, run.out
    if run.checkpoint:
        step = json.loads((Path(run.checkpoint) / "trainer_state.json").read_text()).get("global_step")
        log.info("resuming from %s (step %s)", run.checkpoint, step)
    trainer.train(resume_from_checkpoint=run.checkpoint)
    trainer.save_model(str(out))
    trainer.save_state()
    if trainer.is_world_process_zero():
        run.processor.save_pretrained(str(out))
        log.info("%s output in %s (step %d)", run.recipe.kind, out, trainer.state.global_step)
    return out


# -- SFT ----------------------------------------------------------------------------------------


def load_traces(paths: list[str]) -> dict[str, dict]:
    """uid -> trace row from trace JSONL files (rows with `uid` and `reply`, and from `progresslm train
    traces` also `prompt_hash`, `progress`, `closest_idx`, `tolerance`); rows with `kept: false` skipped."""
    traces: dict[str, dict] = {}
    for path in expand_files(paths):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecipeError(f"{path}:{number}: not JSON ({error})") from error
            if not isinstance(row, dict) or "uid" not in row or "reply" not in row:
                raise RecipeError(f"{path}:{number}: a trace row needs 'uid' and 'reply'")
            if row.get("kept", True):
                traces[str(row["uid"])] = row
    return traces


def as_prompt_completion(dataset):
    """SFT rows (`messages` = system, user, assistant) in TRL's prompt/completion form, so that only
    the reply is trained on: the prompt is every message but the last, the completion the last."""
    from datasets import Json

    def split(messages):
        if not messages or messages[-1]["role"] != "assistant":
            raise RecipeError("an SFT row's last message is not the assistant's reply")
        return {"prompt": messages[:-1], "completion": messages[-1:]}

    features = dataset.features.copy()
    del features["messages"]
    features["prompt"] = Json()
    features["completion"] = Json()
    return dataset.map(
        split, input_columns=["messages"], remove_columns=["messages"], features=features, desc="prompt/completion"
    )


def augmented(samples: list, recipe: _Recipe, image_root) -> list:
    """`samples` plus the recipe's self demos, demo cuts and swapped-demo negatives (`progresslm.train.augment`)."""
    from progresslm.train.augment import augment

    data = recipe.data
    if not data.demo_cuts and not data.swap_negatives and not data.self_demos:
        return samples
    out = augment(
        samples, image_root, cuts=data.demo_cuts, swaps=data.swap_negatives, seed=recipe.seed, selfs=data.self_demos
    )
    log.info("%d samples + %d self demos / demo cuts / swapped-demo negatives", len(samples), len(out) - len(samples))
    return out


def sft_dataset(recipe: SFTRecipe):
    """The recipe's SFT rows as a datasets.Dataset in prompt/completion form."""
    from progresslm.official import load_bench
    from progresslm.train.data import sft_records, to_dataset

    data = recipe.data
    samples = load_bench(expand_files(data.files)).samples[: data.max_samples]
    traces = None
    if data.traces:
        from progresslm.train.traces import match_traces

        traces, dropped = match_traces(samples, load_traces(data.traces))
        if dropped:
            shown = "; ".join(f"{uid}: {reason}" for uid, reason in dropped[:3])
            warnings.warn(
                f"dropped {len(dropped)} reasoning traces that no longer match their samples ({shown}"
                f"{'; ...' if len(dropped) > 3 else ''}); rewrite them with progresslm train traces",
                stacklevel=2,
            )
        kept = [sample for sample in samples if sample.uid in traces]
        log.info("%d of %d samples have a matching reasoning trace; training on those", len(kept), len(samples))
        samples = kept
    image_root = image_root_path(data.image_root)
    samples = augmented(samples, recipe, image_root)
    records = sft_records(
        samples,
        image_root,
        mode=data.mode,
        traces=traces,
        seed=recipe.seed,
        skip_bad=data.skip_bad,
        trace_style=data.trace_style,
        hints=prompt_hints(recipe, samples, image_root),
    )
    return as_prompt_completion(to_dataset(records))


def build_sft_trainer(recipe: SFTRecipe) -> TrainerRun:
    """Check the recipe against this machine, build the dataset, load the model and processor, and
    set up TRL's SFTTrainer (nothing is trained yet)."""
    from trl import SFTConfig, SFTTrainer

    from progresslm.train.export import build_trainer, is_adapter_dir, load_model, load_processor, resolve_model

    check_trl_overrides(recipe, SFTConfig)
    check_environment(recipe)
    out, checkpoint = prepare_output_dir(recipe)
    model_path = resolve_model(recipe.model)
    if is_adapter_dir(model_path) and recipe.lora is not None:
        raise RecipeError(
            f"model: {model_path} is a LoRA adapter; a new adapter on top of it would not load as one model. "
            "Merge it first (progresslm train export --adapter DIR --out MERGED) and train from MERGED"
        )
    dataset = sft_dataset(recipe)
    save_recipe(recipe, out)

    # The TRL config comes before the model: under DeepSpeed ZeRO-3 it makes from_pretrained shard on load.
    args = build_trl_config(SFTConfig, sft_trl_args(recipe, out))
    processor = load_processor(model_path, recipe.max_pixels)
    model = load_model(model_path, model_dtype(recipe), merge_adapter=True)  # an adapter only for full FT
    freeze_modules(model, recipe.freeze)
    peft_config = lora_config(recipe.lora)
    trainer = build_trainer(
        lambda: SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config,
            callbacks=[jsonl_log(out / LOG_FILE)],
        ),
        lora_given=peft_config is not None,
    )
    return TrainerRun(trainer, processor, recipe, out, checkpoint)


def run_sft(recipe: SFTRecipe) -> Path:
    """Fine-tune `recipe.model` on the recipe's data; returns the output directory."""
    return fit(build_sft_trainer(recipe))
