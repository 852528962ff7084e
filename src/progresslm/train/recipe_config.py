"""Training recipes: what every recipe holds (`Recipe`: the model, the data, LoRA and the optimisation) and the checks
that need only the recipe. The recipes themselves are `sft_config.SFTRecipe` and `grpo_config.GRPORecipe`, in TRL's
manner (`<algo>_config.py`); `recipes.py` reads them from YAML plus `key=value` overrides.

A recipe names the model, the data (benchmark-format JSONL files), LoRA settings and the paper's
hyper-parameters (docs/protocol.md §6); `trl_overrides` passes anything else straight to TRL's
`SFTConfig` / `GRPOConfig`. Nothing here imports torch: every check that can be made from the
file alone is made here, so a typo or an impossible combination fails in a second with the key,
the file and what to do. `progresslm.train.trainer.check_environment` adds the checks that need the
machine (GPU, vLLM) and `check_trl_overrides` the ones that need TRL.

Batch sizes are effective: `batch_size` is what one optimizer step sees over all processes;
gradient accumulation is derived from `per_device_batch_size` and the number of processes, so the
same recipe gives the same optimisation on one GPU or eight.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progresslm.io import expand_path
from progresslm.prompts import MODES
from progresslm.train.traces import TRACE_STYLES


class RecipeError(ValueError):
    """A recipe that cannot run: says which key, in which file, why, and how to fix it."""


@dataclass
class DataSettings:
    """Where the training samples come from."""

    files: list[str] = field(default_factory=list)  # benchmark-format JSONL; `~` and globs are expanded
    image_root: str | None = None  # images at IMAGE_ROOT/<id>/<file>; null: image names are paths as they are
    mode: str = "two-stage"  # prompt builder mode, the same one evaluation uses
    traces: list[str] = field(default_factory=list)  # SFT only: reasoning-trace JSONL files (else written from labels)
    max_samples: int | None = None  # keep the first N samples (quick runs)
    skip_bad: bool = False  # drop rows with missing images or labels (with a warning) instead of failing
    trace_style: str = "full"  # SFT replies written from labels: "full" reasoning or "short" one-liners
    # Extra samples that make the model use the demonstration (progresslm.train.augment), per answerable sample:
    demo_cuts: float = 0.0  # the demo cut after an earlier step (new anchor and rescaled score)
    swap_negatives: float = 0.0  # another task's goal and demo, labelled N/A
    self_demos: float = 0.0  # same-view visual samples whose demo is their own episode's key frames
    # Retrieval hints in every prompt (progresslm.matcher.hints), as evaluation's --hints gives them:
    hints: str | None = None  # null: none (the paper's prompts); "matcher"
    hints_model: str | None = None  # matcher folder (cross-fitted when it has folds); null: the shipped matcher


@dataclass
class LoraSettings:
    """PEFT LoRA; `lora: false` in a recipe means full fine-tuning."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # "all-linear" is PEFT's shorthand for every linear layer but the output head (the paper's choice);
    # a list of module names or a regex string narrows it, e.g. to the language model.
    target_modules: str | list[str] = "all-linear"


@dataclass
class Recipe:
    """What every recipe has (model, data, LoRA, optimisation, output); `sft_config.SFTRecipe` and
    `grpo_config.GRPORecipe` add their own keys and checks."""

    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # hub id, model directory, or (GRPO) an SFT adapter directory
    data: DataSettings = field(default_factory=DataSettings)
    output_dir: str = ""
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    batch_size: int = 64  # effective: samples (GRPO: completions) per optimizer step over all processes
    per_device_batch_size: int = 4
    epochs: float = 2.0
    max_steps: int | None = None  # stops early; overrides epochs
    bf16: bool = True
    gradient_checkpointing: bool = True
    save_steps: int = 500
    save_total_limit: int | None = 3
    logging_steps: int = 10
    seed: int = 0
    use_cpu: bool = False
    max_pixels: int | None = None  # cap on pixels per image (the processor's longest_edge); saved with the model
    resume: bool = True  # continue from the newest checkpoint-* in output_dir
    report_to: str | list[str] = "none"
    # Modules kept as they are (no gradient, BatchNorm and dropout in eval mode), by name prefix, e.g.
    # model.vision_tower (nano's pretrained EfficientNet-Lite0) or model.visual (Qwen2.5-VL's ViT).
    freeze: list[str] = field(default_factory=list)
    trl_overrides: dict[str, Any] = field(default_factory=dict)  # passed to TRL's config as they are

    kind: typing.ClassVar[str] = ""

    def gradient_accumulation(self, world_size: int | None = None) -> int:
        """Micro-batches per optimizer step so that one step sees `batch_size` samples in all."""
        world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        per_step = self.per_device_batch_size * world
        if self.batch_size % per_step:
            raise RecipeError(
                f"batch_size {self.batch_size} is not a multiple of per_device_batch_size x processes "
                f"({self.per_device_batch_size} x {world} = {per_step}): the effective batch cannot be met exactly; "
                "change batch_size or per_device_batch_size"
            )
        return self.batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.lora is None:
            out["lora"] = False
        return out

    def check(self, fail: Callable[[str, str, str], None]) -> None:
        """Every check that needs only the recipe, in order; `fail(key, why, fix)` raises. Recipes add theirs."""
        if not self.model:
            fail("model", "no model given", "set a hub id or a model directory (model=PATH on the command line)")
        if not self.output_dir:
            fail("output_dir", "no output directory given", "set output_dir (output_dir=runs/sft on the command line)")
        _check_data(self, fail)
        _check_lora(self.lora, fail)
        _check_optimisation(self, fail)


# -- checks every recipe makes -----------------------------------------------------------------------


def _shown(path: str) -> str:
    """A recipe path for an error message, with what it expands to when that differs."""
    expanded = expand_path(path)
    return path if expanded == path else f"{path} (= {expanded})"


def _check_data(recipe: Recipe, fail) -> None:
    data = recipe.data
    if not data.files:
        fail("data.files", "no training data", "list benchmark-format JSONL files under data.files")
    for key, patterns, fix in (
        ("data.files", data.files, "build the data (progresslm sim build) or fix the path"),
        ("data.traces", data.traces, "write the traces first (progresslm train traces) or remove data.traces"),
    ):
        for pattern in patterns:
            text = expand_path(pattern)
            if glob.has_magic(text) and not glob.glob(text):
                fail(key, f"{_shown(pattern)} matches no file", fix)
            if not glob.has_magic(text) and not Path(text).is_file():
                fail(key, f"{_shown(pattern)} does not exist", fix)
    if data.image_root is not None and not Path(expand_path(data.image_root)).is_dir():
        fail(
            "data.image_root",
            f"{_shown(data.image_root)} is not a directory",
            "point it at the folder holding <id>/<image>",
        )
    if data.traces and recipe.kind != "sft":
        fail("data.traces", "reasoning traces are SFT data", "remove data.traces from a GRPO recipe")
    if data.mode not in MODES:
        fail("data.mode", f"unknown mode {data.mode!r}", f"use one of {', '.join(MODES)}")
    if recipe.kind == "grpo" and data.mode != "two-stage":
        why = (
            f"GRPO with mode {data.mode!r}: the format, anchor and score rewards read two-stage replies "
            f"(<ref_think>, <ref>, <score_think>, <score>), so every {data.mode} completion would earn 0"
        )
        fail("data.mode", why, "use data.mode=two-stage for GRPO")
    if data.traces and data.mode != "two-stage":
        why = (
            f"reasoning traces are two-stage replies but data.mode is {data.mode!r}: the model would be "
            "trained on replies its prompt does not ask for"
        )
        fail(
            "data.mode",
            why,
            "use data.mode=two-stage with data.traces, or remove data.traces (direct "
            "mode writes its answers from the labels)",
        )
    if data.max_samples is not None and data.max_samples < 1:
        fail("data.max_samples", f"{data.max_samples} keeps no sample", "use a positive number or null")
    if data.trace_style not in TRACE_STYLES:
        fail("data.trace_style", f"unknown style {data.trace_style!r}", f"use one of {', '.join(TRACE_STYLES)}")
    for key in ("demo_cuts", "swap_negatives", "self_demos"):
        if getattr(data, key) < 0:
            fail(f"data.{key}", f"{getattr(data, key)} is negative", "use a rate >= 0 (extra samples per sample)")
    if data.hints not in (None, "none", "matcher"):
        fail("data.hints", f"unknown hints source {data.hints!r}", "use null (no hints) or matcher")
    if data.hints_model is not None and not (Path(expand_path(data.hints_model)) / "config.json").is_file():
        fail("data.hints_model", f"{_shown(data.hints_model)} holds no matcher (config.json)",
             "train one first (progresslm train matcher) or leave it null for the shipped matcher")


def _check_lora(lora: LoraSettings | None, fail) -> None:
    if lora is None:
        return
    if lora.rank <= 0:
        fail("lora.rank", f"{lora.rank} is not a LoRA rank", "use a positive rank (8 in the paper), or lora=false")
    if lora.alpha <= 0:
        fail("lora.alpha", f"{lora.alpha} must be positive", "use e.g. twice the rank (16 in the paper)")
    if not 0 <= lora.dropout < 1:
        fail("lora.dropout", f"{lora.dropout} is not a probability below 1", "use a value in [0, 1), e.g. 0.05")
    if not lora.target_modules:
        fail("lora.target_modules", "no modules to adapt", 'use "all-linear" or a list of module names')


def _check_optimisation(recipe: Recipe, fail) -> None:
    for key in ("learning_rate", "batch_size", "per_device_batch_size", "epochs", "save_steps", "logging_steps"):
        if getattr(recipe, key) <= 0:
            fail(key, f"{getattr(recipe, key)} must be positive", "use a value above 0")
    if recipe.max_steps is not None and recipe.max_steps <= 0:
        fail("max_steps", f"{recipe.max_steps} trains nothing", "use a positive number of steps, or null for epochs")
    if not 0 <= recipe.warmup_ratio < 1:
        fail("warmup_ratio", f"{recipe.warmup_ratio} is not a fraction of training", "use a value in [0, 1)")
    if recipe.max_pixels is not None and recipe.max_pixels < 28 * 28:
        fail("max_pixels", f"{recipe.max_pixels} is below one 28 x 28 patch group", "use at least 784, e.g. 50176")
    if recipe.batch_size % recipe.per_device_batch_size:
        fail(
            "batch_size",
            f"{recipe.batch_size} is not a multiple of per_device_batch_size {recipe.per_device_batch_size}",
            "make batch_size a multiple of per_device_batch_size (x the number of processes)",
        )
