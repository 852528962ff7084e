"""What every trainer of `progresslm train` shares (TRL's `base_trainer.py` plays this part there): the checks a
recipe must pass against TRL, transformers and this machine, the TRL config built from a recipe (SFTConfig or
GRPOConfig), the output folder and the checkpoint to resume from, LoRA and frozen modules, the recipe's data
augmentation and prompt hints, the JSONL log, and `fit`, which trains and saves what evaluation loads.

`sft.py` and `grpo.py` are siblings built on this module; neither imports the other. Models and processors are
loaded by `progresslm.train.models`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progresslm.io import expand_path
from progresslm.matcher.hints import HintError, HintProvider
from progresslm.train.augment import augment
from progresslm.train.grpo_config import GRPORecipe, reward_config
from progresslm.train.model_card import write_model_card
from progresslm.train.recipe_config import LoraSettings, Recipe, RecipeError
from progresslm.train.sft_config import SFTRecipe

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"

def check_trl_overrides(recipe: Recipe, config_class: type):
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
    import torch  # lazy: torch (the [hf] and [train] extras)

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

def recipe_trl_args(recipe: Recipe, out: Path) -> dict[str, Any]:
    """Every argument of the recipe's TRL config (SFTConfig or GRPOConfig)."""
    if isinstance(recipe, GRPORecipe):
        return grpo_trl_args(recipe, out)
    return sft_trl_args(recipe, out)

def check_transformers_names(recipe: Recipe) -> None:
    """`lr_scheduler` and `report_to` are names transformers knows (else the Trainer fails late)."""
    # lazy: transformers (the [hf] and [train] extras)
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

def check_environment(recipe: Recipe) -> None:
    """Checks that need this machine: CUDA and bf16 support, vLLM installed. Loads no model."""
    import torch  # lazy: torch (the [hf] and [train] extras)

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
    if recipe.bf16 and not cuda and not cpu_has_bf16():
        raise RecipeError(
            "bf16: bf16 mixed precision was asked for with use_cpu, and this CPU has no native bfloat16 "
            "(AVX512-BF16 or AMX), where it is slow; set bf16=false for this machine (the *_tiny_cpu recipes do)"
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
            "pip install -e '.[vllm]' (in the progresslm clone) or set use_vllm=false (plain transformers generation)"
        )

def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (x86 AVX512-BF16 or AMX). With it, a bf16 matmul on these
    2-core machines ran 9x faster than fp32 (2,079 vs 236 GFLOPS, 700 x 2048 x 11008); without it, torch emulates
    bf16 and it is slower than fp32. torch has no public probe: a missing one counts as no."""
    import torch  # lazy: torch (the [hf] and [train] extras)

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)

def prepare_output_dir(recipe: Recipe) -> tuple[Path, str | None]:
    """The output directory and the checkpoint to resume from (None: start fresh)."""
    from transformers.trainer_utils import get_last_checkpoint  # lazy: transformers (the [hf] and [train] extras)

    out = Path(recipe.output_dir).expanduser()
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    if checkpoint and not recipe.resume:
        raise RecipeError(
            f"output_dir {out} already holds {Path(checkpoint).name} and resume is false: a fresh run would mix its "
            "checkpoints with the old ones; set resume=true to continue, or choose another output_dir"
        )
    return out, checkpoint

def common_trl_args(recipe: Recipe, out: Path) -> dict[str, Any]:
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
    from transformers import TrainingArguments  # lazy: transformers (the [hf] and [train] extras)

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"

def lora_config(lora: LoraSettings | None):
    """A PEFT LoraConfig for the recipe's LoRA settings; None for full fine-tuning."""
    if lora is None:
        return None
    from peft import LoraConfig  # lazy: peft (the [train] extra)

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

def prompt_hints(recipe: Recipe, samples: list, image_root) -> dict[str, str] | None:
    """uid -> hints line for the recipe's `data.hints` (None when the recipe has none)."""
    data = recipe.data
    if data.hints in (None, "none"):
        return None

    try:
        provider = HintProvider(expand_path(data.hints_model) if data.hints_model else None)
    except HintError as error:
        raise RecipeError(f"data.hints_model: {error}") from error
    hints = provider.hints(samples, image_root)
    log.info("matcher hints for %d of %d samples (%s)", len(hints), len(samples), provider.name)
    return hints

def model_dtype(recipe: Recipe):
    """bf16 weights only for a frozen LoRA base: fully trained weights stay fp32 under bf16 autocast,
    since updates at lr 1e-6 are below bf16's resolution and would be lost."""
    import torch  # lazy: torch (the [hf] and [train] extras)

    return torch.bfloat16 if recipe.bf16 and recipe.lora is not None else torch.float32

def jsonl_log(path: Path):
    """A TrainerCallback that appends every Trainer log (loss, lr, rewards, rates) to `path` as it
    happens, so a crash loses nothing and a run can be watched with `tail -f`."""
    from transformers import TrainerCallback  # lazy: transformers (the [hf] and [train] extras)

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
    recipe: Recipe
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
        write_model_card(out)  # over TRL's generic card
        log.info("%s output in %s (step %d)", run.recipe.kind, out, trainer.state.global_step)
    return out

def augmented(samples: list, recipe: Recipe, image_root) -> list:
    """`samples` plus the recipe's self demos, demo cuts and swapped-demo negatives (`progresslm.train.augment`)."""
    data = recipe.data
    if not data.demo_cuts and not data.swap_negatives and not data.self_demos:
        return samples
    out = augment(
        samples, image_root, cuts=data.demo_cuts, swaps=data.swap_negatives, seed=recipe.seed, selfs=data.self_demos
    )
    log.info("%d samples + %d self demos / demo cuts / swapped-demo negatives", len(samples), len(out) - len(samples))
    return out


def grpo_trl_args(recipe: GRPORecipe, out: Path) -> dict:
    """GRPOConfig arguments: the common ones, GRPO's own, then `trl_overrides`."""
    weights = list(reward_config(recipe).weights)
    args = {
        **common_trl_args(recipe, out),
        "beta": recipe.beta,
        "num_generations": recipe.num_generations,
        "temperature": recipe.temperature,
        "top_p": recipe.top_p,
        "max_completion_length": recipe.max_completion_length,
        "loss_type": recipe.loss_type,
        "scale_rewards": recipe.scale_rewards,
        "reward_weights": weights,
        "use_vllm": recipe.use_vllm,
    }
    if recipe.use_vllm:
        args["vllm_mode"] = recipe.vllm_mode
    args.update(recipe.trl_overrides)  # again, over GRPO's own keys too
    return args


def build_trainer(factory, lora_given: bool):
    """Build a TRL trainer; an error raised while PEFT wraps the model (e.g. no module matches
    `lora.target_modules`) becomes a RecipeError naming the LoRA settings."""
    try:
        return factory()
    except (ValueError, TypeError, KeyError) as error:
        if lora_given and _raised_in(error, "peft"):
            raise RecipeError(
                f"lora: PEFT cannot put a LoRA on this model with these settings: {error}. Check "
                'lora.target_modules ("all-linear", a list of module names, or a regex over module names)'
            ) from error
        raise

def _raised_in(error: BaseException, package: str) -> bool:
    """Whether any frame of the error's traceback lies in `package`."""
    marker = f"/{package}/"
    traceback = error.__traceback__
    while traceback is not None:
        if marker in traceback.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        traceback = traceback.tb_next
    return False
