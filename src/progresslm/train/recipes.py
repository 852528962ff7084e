"""Recipes from YAML files plus `key=value` overrides (read as YAML), checked before any model loads: the engine under
`progresslm train sft` and `train grpo` (the recipes themselves: `sft_config.py`, `grpo_config.py`, their common part
`recipe_config.py`). A bad key or value is a `RecipeError` naming the file and line (or the command line), why, and
the fix. The same engine reads a model builder's YAML (`builder_settings`) for `train nano-init` and `train
tiny-model`, and writes the resolved recipe into every output directory (`save_recipe`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from progresslm.io import write_text_atomic
from progresslm.train.grpo_config import GRPORecipe
from progresslm.train.recipe_config import LoraSettings, Recipe, RecipeError
from progresslm.train.sft_config import SFTRecipe

RECIPE_FILE = "recipe.yaml"  # the resolved recipe, written into every output directory
RECIPES: dict[str, type[Recipe]] = {"sft": SFTRecipe, "grpo": GRPORecipe}


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


def validate(recipe: Recipe, source: _Origin | str = "<recipe>") -> None:
    """Every check that needs only the recipe (its own `check`, then the TRL keys it owns). Raises RecipeError naming
    the key, why, and the fix."""
    origin = source if isinstance(source, _Origin) else _Origin(source)

    def fail(key: str, why: str, fix: str) -> None:
        raise RecipeError(f"{origin.of(key)}: {key}: {why}; {fix}")

    recipe.check(fail)
    for key in recipe.trl_overrides:
        if key in _OWNED:
            fail(f"trl_overrides.{key}", f"{key} is set by the recipe key {_OWNED[key]}", f"set {_OWNED[key]} instead")


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


def save_recipe(recipe: Recipe, out_dir: str | Path) -> Path:
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
