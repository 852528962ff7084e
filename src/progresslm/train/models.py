"""Loading what training and export start from: resolve a model argument (a local directory or a hub id), load a
vision-language model (or a base plus a LoRA adapter) and its processor, with every loading failure a RecipeError
naming the model.

A training output is either a full model directory or a PEFT adapter directory (`adapter_config.json` naming its
base); both carry the processor, so the evaluation backend loads either as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from progresslm.train.recipe_config import RecipeError

ADAPTER_CONFIG = "adapter_config.json"

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()

def adapter_base(adapter_dir: str | Path) -> str:
    """The base model an adapter directory was trained on."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise RecipeError(f"{adapter_dir}/{ADAPTER_CONFIG} names no base_model_name_or_path")
    return base

_LOCAL_PREFIXES = ("./", "../", "/", "~", "runs/", ".\\", "..\\")

def looks_local(model: str) -> bool:
    """Whether a model argument means a path on this machine rather than a hub id: it starts with
    `./`, `../`, `/`, `~` or `runs/` (where training writes), or its first path component exists here.

    >>> looks_local("runs/sft-tiny"), looks_local("./model"), looks_local("Qwen/Qwen2.5-VL-3B-Instruct")
    (True, True, False)
    """
    if model in (".", "..") or model.startswith(_LOCAL_PREFIXES):
        return True
    first = Path(model).parts[0] if Path(model).parts else ""
    return bool(first) and Path(first).expanduser().exists()

def resolve_model(model: str) -> str:
    """A local model or adapter directory as an absolute path (adapters record it as their base), or
    a hub id. Anything else is a RecipeError saying what is missing; call it before writing anything."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise RecipeError(f"model: {path} is a file; give the directory that holds config.json")
        if not (path / "config.json").is_file() and not is_adapter_dir(path):
            raise RecipeError(f"model: {path} holds neither config.json nor {ADAPTER_CONFIG}; is it a model directory?")
        return str(path.resolve())
    if looks_local(model):
        raise RecipeError(
            f"model: {model} does not exist on this machine (a local path, not a hub id); train it first "
            "(e.g. progresslm train sft for an SFT output, progresslm train tiny-model --out DIR for the tiny "
            "model) or set model=PATH to an existing model directory"
        )
    if not _HUB_ID.match(model):
        raise RecipeError(f"model: {model} does not exist (and is not a hub id like Qwen/Qwen2.5-VL-3B-Instruct)")
    return model

def _loading(what: str, source: str, call):
    """Run a from_pretrained call; a missing or unreadable model becomes a RecipeError naming it."""
    try:
        return call()
    except (OSError, ValueError, KeyError) as error:
        raise RecipeError(
            f"model: cannot load the {what} of {source}: {error}. Check the model path or hub id (and network "
            "access or HF_HUB_OFFLINE for hub ids)"
        ) from error

def load_processor(model: str, max_pixels: int | None = None):
    """The processor saved with `model` (an adapter directory's own, else its base's), with the
    image size capped at `max_pixels` so the cap is saved with the trained model."""
    from transformers import AutoProcessor  # lazy: transformers (the [hf] and [train] extras)

    source = model
    if is_adapter_dir(model) and not any((Path(model) / name).is_file() for name in PROCESSOR_FILES):
        source = adapter_base(model)
    processor = _loading("processor", source, lambda: AutoProcessor.from_pretrained(source))
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise RecipeError(
            f"model: {source} gave a {type(processor).__name__}, not a vision-language processor; "
            "check that the processor files are saved with the model and that torchvision is installed"
        )
    if max_pixels is not None:
        image_processor = processor.image_processor
        if "longest_edge" not in (image_processor.size or {}):
            raise RecipeError(
                f"max_pixels: {type(image_processor).__name__} resizes every image to {dict(image_processor.size)}, "
                "not by pixel count (as Qwen2-VL-style processors do); remove max_pixels from the recipe"
            )
        shortest = min(image_processor.size.get("shortest_edge") or max_pixels, max_pixels)
        image_processor.size = {"shortest_edge": shortest, "longest_edge": max_pixels}
    return processor

def load_model(model: str, dtype, *, merge_adapter: bool = True, trainable_adapter: bool = False):
    """A vision-language model from a model directory or hub id, or from an adapter directory: its
    base with the adapter merged in (`merge_adapter`) or kept as a PeftModel (`trainable_adapter`
    makes its weights trainable). Loading errors are RecipeErrors naming the model."""
    from transformers import AutoModelForImageTextToText  # lazy: transformers (the [hf] and [train] extras)

    if not is_adapter_dir(model):
        return _loading("weights", model, lambda: AutoModelForImageTextToText.from_pretrained(model, dtype=dtype))
    from peft import PeftModel

    base_name = adapter_base(model)
    base = _loading("weights", base_name, lambda: AutoModelForImageTextToText.from_pretrained(base_name, dtype=dtype))
    peft_model = _loading(
        "LoRA adapter", model,
        lambda: PeftModel.from_pretrained(base, model, is_trainable=trainable_adapter and not merge_adapter),
    )  # fmt: skip
    return peft_model.merge_and_unload() if merge_adapter else peft_model
