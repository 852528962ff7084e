"""Training recipes: YAML files plus `key=value` overrides, checked before any model loads.

A recipe names the model, the data (benchmark-format JSONL files), LoRA settings and the paper's
hyper-parameters (docs/protocol.md §6); `trl_overrides` passes anything else straight to TRL's
`SFTConfig` / `GRPOConfig`. Loading never imports torch: every check that can be made from the
file alone is made here, so a typo or an impossible combination fails in a second with the key,
the file and what to do. `progresslm.train.trainer.check_environment` adds the checks that need the
machine (GPU, vLLM) and `check_trl_overrides` the ones that need TRL.

Batch sizes are effective: `batch_size` is what one optimizer step sees over all processes;
gradient accumulation is derived from `per_device_batch_size` and the number of processes, so the
same recipe gives the same optimisation on one GPU or eight.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from progresslm.io import expand_path, write_text_atomic
from progresslm.prompts import MODES
from progresslm.train.traces import TRACE_STYLES

RECIPE_FILE = "recipe.yaml"  # the resolved recipe, written into every output directory
# GRPOConfig's accepted values in TRL 1.16 (checked against TRL's field help in the tests).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")


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
class _Recipe:
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


@dataclass
class SFTRecipe(_Recipe):
    """LoRA (or full) supervised fine-tuning on reasoning traces. Defaults: docs/protocol.md §6."""

    max_length: int | None = None  # no truncation: cutting a prompt would cut its image tokens

    kind: typing.ClassVar[str] = "sft"


@dataclass
class GRPORecipe(_Recipe):
    """GRPO with the format / anchor / score rewards. Defaults: docs/protocol.md §6.

    `batch_size` counts completions (TRL's convention): 64 with 16 generations is 4 prompts per step.
    """

    learning_rate: float = 1e-6
    warmup_ratio: float = 0.0
    lr_scheduler: str = "constant"
    per_device_batch_size: int = 8
    save_steps: int = 100
    logging_steps: int = 1
    beta: float = 0.01  # KL coefficient
    num_generations: int = 16
    temperature: float = 0.6
    top_p: float = 0.9
    max_completion_length: int = 512
    # The objective, pinned rather than left to TRL's defaults (TRL 1.16: loss_type "dapo"): the paper's
    # GRPO normalises each completion's token losses by its length ("grpo") and scales advantages by
    # the standard deviation within each group of generations ("group").
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    # RewardConfig fields of progresslm.train.rewards: weights (format, ref, score) = 1:6:3 and the N/A terms.
    reward: dict[str, Any] = field(default_factory=lambda: {"weights": [0.1, 0.6, 0.3]})
    use_vllm: bool = False  # TRL's vLLM rollouts; needs `pip install vllm` and a GPU
    vllm_mode: str = "colocate"

    kind: typing.ClassVar[str] = "grpo"


RECIPES: dict[str, type[_Recipe]] = {"sft": SFTRecipe, "grpo": GRPORecipe}


# -- loading ------------------------------------------------------------------------------------


def load_recipe(path: str | Path | None, overrides: list[str] = (), kind: str | None = None) -> SFTRecipe | GRPORecipe:
    """Read a recipe YAML (or only defaults when `path` is None), apply `key=value` / `a.b=value`
    overrides (values parsed as YAML scalars), and validate it. Raises RecipeError.

    `kind` ("sft" or "grpo") is what the caller needs; None takes the file's `kind:` key, else
    guesses from GRPO-only keys (beta, num_generations, reward, ...), else "sft"."""
    if kind is not None and kind not in RECIPES:
        raise RecipeError(f"unknown recipe kind {kind!r}; valid: {', '.join(RECIPES)}")
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    text = ""
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise RecipeError(f"recipe file {file} does not exist")
        text = file.read_text()
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RecipeError(f"{file}: not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise RecipeError(f"{file}: a recipe is a mapping of keys to values, got {type(loaded).__name__}")
        raw = loaded or {}
    overridden = frozenset(_apply_override(raw, override) for override in overrides)
    # A recipe file may name its kind (saved ones do); it then loads only as that kind.
    stated = raw.pop("kind", None)
    if stated is not None and stated not in RECIPES:
        raise RecipeError(f"{source}: kind: unknown {stated!r}; valid: {', '.join(RECIPES)}")
    if stated is not None and kind is not None and stated != kind:
        raise RecipeError(f"{source}: this is a {stated} recipe; use it with `progresslm train {stated}`")
    grpo_only = {f.name for f in dataclasses.fields(GRPORecipe)} - {f.name for f in dataclasses.fields(SFTRecipe)}
    kind = kind or stated or ("grpo" if grpo_only & set(raw) else "sft")
    origin = _Origin(source, overridden, text)
    recipe = _build(RECIPES[kind], raw, prefix="", source=origin)
    validate(recipe, origin)
    return recipe


@dataclass(frozen=True)
class _Origin:
    """Where a key's value came from, for error messages: the recipe file or the command line."""

    file: str
    overridden: frozenset[str] = frozenset()
    text: str = ""  # the file's text, to find a key's line

    def of(self, where: str) -> str:
        key = where.split("[")[0]
        if any(key == o or key.startswith(f"{o}.") for o in self.overridden):
            return f"command line (over {self.file})"
        # The first line that sets the key's last part, indented as deep as its section.
        parts = key.split(".")
        pattern = re.compile(rf"^\s{{{2 * (len(parts) - 1)}}}{re.escape(parts[-1])}\s*:", re.MULTILINE)
        match = pattern.search(self.text)
        return f"{self.file}:{self.text.count(chr(10), 0, match.start()) + 1}" if match else self.file


def _apply_override(raw: dict[str, Any], override: str) -> str:
    """Set one `a.b=value` in the raw recipe; returns the dotted key."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"override {override!r} is not key=value (e.g. learning_rate=2e-4 or lora.rank=16)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise RecipeError(f"override {override!r}: the value is not valid YAML: {error}") from error
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or child is True or child is False:
            # `lora: false` then `lora.rank=4` turns LoRA back on with that rank.
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise RecipeError(f"override {override!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return key


def _build(cls: type, raw: dict[str, Any], prefix: str, source: _Origin):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise RecipeError(_unknown_key(f"{prefix}{key}", key, names, source))
        values[key] = _convert(value, hints[key], f"{prefix}{key}", source)
    return cls(**values)


def _unknown_key(where: str, key: str, valid: list[str], source: _Origin | str) -> str:
    close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    source = source.of(where) if isinstance(source, _Origin) else source
    return f"{source}: unknown key {where!r}{hint} Valid keys here: {', '.join(valid)}"


def _convert(value: Any, hint: Any, where: str, source: _Origin) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        if LoraSettings in options:  # `lora: true` = defaults, `lora: false` = full fine-tuning
            if value is False:
                return None
            if value is True:
                return LoraSettings()
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where, source)
            except RecipeError as error:
                errors.append(str(error))
        raise RecipeError(errors[-1] if errors else f"{source.of(where)}: {where} cannot be {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecipeError(f"{source.of(where)}: {where} is a section (a mapping of keys), got {value!r}")
        return _build(hint, value, f"{where}.", source)
    if origin is list:
        (item,) = typing.get_args(hint)
        items = value if isinstance(value, list) else [value]  # one file needs no brackets
        return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(items)]
    if origin is dict or hint is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise RecipeError(f"{source.of(where)}: {where} is a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        # YAML reads 1e-4 (no dot) as a string; accept any number spelling.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise RecipeError(f"{source.of(where)}: {where} must be {getattr(hint, '__name__', hint)}, got {value!r}")


# -- validation ---------------------------------------------------------------------------------


def _shown(path: str) -> str:
    """A recipe path for an error message, with what it expands to when that differs."""
    expanded = expand_path(path)
    return path if expanded == path else f"{path} (= {expanded})"


def validate(recipe: _Recipe, source: _Origin | str = "<recipe>") -> None:
    """Every check that needs only the recipe. Raises RecipeError naming the key, why, and the fix."""
    origin = source if isinstance(source, _Origin) else _Origin(source)

    def fail(key: str, why: str, fix: str) -> None:
        raise RecipeError(f"{origin.of(key)}: {key}: {why}; {fix}")

    if not recipe.model:
        fail("model", "no model given", "set a hub id or a model directory (model=PATH on the command line)")
    if not recipe.output_dir:
        fail("output_dir", "no output directory given", "set output_dir (output_dir=runs/sft on the command line)")
    _check_data(recipe, fail)
    _check_lora(recipe.lora, fail)
    _check_optimisation(recipe, fail)
    if isinstance(recipe, GRPORecipe):
        _check_grpo(recipe, fail)
        _check_reward(recipe, fail)
    for key in recipe.trl_overrides:
        if key in _OWNED:
            fail(f"trl_overrides.{key}", f"{key} is set by the recipe key {_OWNED[key]}", f"set {_OWNED[key]} instead")


def _check_data(recipe: _Recipe, fail) -> None:
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


def _check_optimisation(recipe: _Recipe, fail) -> None:
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
    if isinstance(recipe, SFTRecipe) and recipe.max_length is not None and recipe.max_length < 64:
        fail("max_length", f"{recipe.max_length} tokens cannot hold a prompt", "use null (no truncation) or more")


def _check_grpo(recipe: GRPORecipe, fail) -> None:
    if recipe.num_generations < 2:
        why = f"{recipe.num_generations} < 2: GRPO compares completions within a group"
        fail("num_generations", why, "use 2 or more (16 in the paper)")
    if recipe.batch_size % recipe.num_generations:
        why = (
            f"{recipe.num_generations} does not divide batch_size {recipe.batch_size} (completions per step), "
            "so a generation batch would hold a partial group"
        )
        fail("num_generations", why, "make batch_size a multiple of num_generations")
    if recipe.beta < 0:
        fail("beta", f"{recipe.beta} is negative", "use 0 (no KL term) or a positive coefficient (0.01 in the paper)")
    if recipe.temperature <= 0:
        fail("temperature", f"{recipe.temperature} leaves nothing to sample", "use a positive value (0.6 in the paper)")
    if not 0 < recipe.top_p <= 1:
        fail("top_p", f"{recipe.top_p} is not in (0, 1]", "use e.g. 0.9")
    if recipe.max_completion_length < 8:
        fail("max_completion_length", f"{recipe.max_completion_length} tokens cannot hold an answer", "use e.g. 512")
    if recipe.loss_type not in LOSS_TYPES:
        fail(
            "loss_type",
            f"TRL has no loss {recipe.loss_type!r}",
            f"use one of {', '.join(LOSS_TYPES)} (grpo in the paper)",
        )
    if recipe.scale_rewards not in SCALE_REWARDS:
        fail(
            "scale_rewards",
            f"unknown scaling {recipe.scale_rewards!r}",
            f"use one of {', '.join(SCALE_REWARDS)} (group in the paper)",
        )
    if recipe.use_vllm and recipe.use_cpu:
        fail("use_vllm", "vLLM rollouts need a GPU and use_cpu is set", "set use_vllm=false for CPU runs")
    if recipe.vllm_mode not in ("colocate", "server"):
        fail("vllm_mode", f"unknown mode {recipe.vllm_mode!r}", "use colocate, or server (with trl vllm-serve)")


def _check_reward(recipe: GRPORecipe, fail) -> None:
    from progresslm.train.rewards import RewardConfig  # pure Python: cheap

    valid = [f.name for f in dataclasses.fields(RewardConfig)]
    for key in recipe.reward:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            fail(f"reward.{key}", f"not a reward setting{hint}", f"valid keys: {', '.join(valid)}")
    weights = recipe.reward.get("weights")
    example = "give [format, ref, score] weights, e.g. [0.1, 0.6, 0.3]"
    if weights is not None:
        if not isinstance(weights, (list, tuple)) or len(weights) != 3:
            fail("reward.weights", f"{weights!r} is not three numbers", example)
        if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in weights):
            fail("reward.weights", f"{weights!r} has a value that is not a non-negative number", example)
        if not any(weights):
            fail("reward.weights", "all zero: every completion would earn the same and GRPO learn nothing", example)
    try:
        reward_config(recipe)
    except (TypeError, ValueError) as error:
        fail("reward", str(error), "see progresslm.train.rewards.RewardConfig")


def reward_config(recipe: GRPORecipe):
    """The recipe's reward section as a `progresslm.train.rewards.RewardConfig`."""
    from progresslm.train.rewards import RewardConfig

    settings = dict(recipe.reward)
    if "weights" in settings:
        settings["weights"] = tuple(float(w) for w in settings["weights"])
    return RewardConfig(**settings)


# Recipe keys that TRL's config also has: set once, in the recipe, so the recipe file stays the truth.
_SAME_NAME = (
    "learning_rate", "max_steps", "bf16", "gradient_checkpointing", "save_steps", "save_total_limit", "logging_steps",
    "seed", "use_cpu", "output_dir", "report_to", "max_length", "beta", "num_generations", "temperature", "top_p",
    "max_completion_length", "use_vllm", "vllm_mode", "loss_type", "scale_rewards",
)  # fmt: skip
_OWNED = {
    **{key: key for key in _SAME_NAME},
    "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio",
    "warmup_ratio": "warmup_ratio",
    "per_device_train_batch_size": "per_device_batch_size",
    "gradient_accumulation_steps": "batch_size",
    "num_train_epochs": "epochs",
    "activation_checkpointing": "gradient_checkpointing",
    "reward_weights": "reward.weights",
}


def save_recipe(recipe: _Recipe, out_dir: str | Path) -> Path:
    """Write the resolved recipe (every default filled in) as YAML into `out_dir`. Under a
    multi-process launch only the first process writes (they would race on the file)."""
    out = Path(out_dir)
    path = out / RECIPE_FILE
    if int(os.environ.get("RANK", "0")) != 0:
        return path
    out.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"kind": recipe.kind, **recipe.to_dict()}, sort_keys=False)
    return write_text_atomic(path, f"# resolved {recipe.kind} recipe: every value this run used\n{body}")


def builder_settings(path: str | Path, builder) -> tuple[dict, list[str]]:
    """A model builder's keyword arguments from a YAML file (`configs/nano_vlm.yaml` for `build_nano_vlm`, a tiny
    Qwen2.5-VL's sizes for `build_tiny_qwen2_5_vl`): a mapping whose keys are the builder's parameters (all but
    `out_dir` and `corpus`), checked against its signature, plus `corpus_files` (benchmark JSONL patterns whose
    prompts and replies the tokenizer learns from), returned apart for the caller to read."""
    import inspect

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read the model config ({error})") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a model config is a mapping of sizes, got {type(raw).__name__}")
    valid = [name for name in inspect.signature(builder).parameters if name not in ("out_dir", "corpus")]
    unknown = [key for key in raw if key not in (*valid, "corpus_files")]
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}, corpus_files")
    return {key: value for key, value in raw.items() if key != "corpus_files"}, list(raw.get("corpus_files") or [])
