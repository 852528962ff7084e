"""Model directories in and out of training: resolve a model argument, load a model (or a base plus
a LoRA adapter) and its processor, and merge an adapter into a full model (`progresslm train export`).

A training output is either a full model directory or a PEFT adapter directory
(`adapter_config.json` naming its base); both carry the processor, so the evaluation backend loads
either as it is. `merge_lora` turns an adapter directory into a standalone full model directory,
for serving engines that take no adapters (vLLM without LoRA, other machines without the base).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from progresslm.train.config import RECIPE_FILE, RecipeError

log = logging.getLogger(__name__)

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
    from transformers import AutoProcessor

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
    from transformers import AutoModelForImageTextToText

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


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "auto") -> Path:
    """Merge the LoRA adapter in `adapter_dir` into its base and save a full model directory (model,
    processor, and the training recipe if there is one) at `out_dir`."""
    import torch

    adapter = Path(adapter_dir).expanduser()
    out = Path(out_dir).expanduser()
    if not is_adapter_dir(adapter):
        raise RecipeError(f"--adapter: {adapter} holds no {ADAPTER_CONFIG}; give a LoRA training output directory")
    if out.resolve() == adapter.resolve():
        raise RecipeError("--out: the merged model needs its own directory, not the adapter's")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise RecipeError(f"--dtype: unknown {dtype!r}; valid: auto, float32, bfloat16, float16")
    base = adapter_base(adapter)
    if not Path(base).exists() and not _HUB_ID.match(base):
        raise RecipeError(f"the adapter's base model {base} is not on this machine; copy it or fix {ADAPTER_CONFIG}")
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = load_model(str(adapter), torch_dtype, merge_adapter=True)
    processor = load_processor(str(adapter))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if (adapter / RECIPE_FILE).is_file():
        shutil.copy2(adapter / RECIPE_FILE, out / RECIPE_FILE)
    source = {"adapter": str(adapter.resolve()), "base": base, "dtype": dtype}
    (out / "export.json").write_text(json.dumps(source, indent=2) + "\n")
    log.info("merged %s into %s", adapter, out)
    return out


def export_model(
    model_dir: str | Path, out_dir: str | Path, dtype: str = "auto", processor_dir: str | Path | None = None
) -> Path:
    """Save a full-fine-tuning output as a clean model directory: weights (safetensors), processor,
    generation config and the training recipe, without optimizer state or checkpoints. A LoRA output
    is merged (`merge_lora`). `processor_dir` gives the processor where `model_dir` has none (an
    intermediate `checkpoint-N` takes its run's)."""
    import torch

    source = Path(model_dir).expanduser()
    if is_adapter_dir(source):
        return merge_lora(source, out_dir, dtype)
    out = Path(out_dir).expanduser()
    if not (source / "config.json").is_file():
        raise RecipeError(f"--model: {source} holds no config.json; give a training output or model directory")
    if out.resolve() == source.resolve():
        raise RecipeError("--out: the exported model needs its own directory")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise RecipeError(f"--dtype: unknown {dtype!r}; valid: auto, float32, bfloat16, float16")
    model = load_model(str(source), "auto" if dtype == "auto" else getattr(torch, dtype), merge_adapter=False)
    processor = load_processor(str(processor_dir or source))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if (source / RECIPE_FILE).is_file():
        shutil.copy2(source / RECIPE_FILE, out / RECIPE_FILE)
    (out / "export.json").write_text(json.dumps({"model": str(source.resolve()), "dtype": dtype}, indent=2) + "\n")
    log.info("exported %s to %s", source, out)
    return out
