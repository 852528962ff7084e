"""`progresslm train export`: a training output as a standalone model directory. `merge_lora` turns an adapter
directory into a full model (for serving engines that take no adapters: vLLM without LoRA, other machines without
the base); `export_model` copies weights, processor and recipe without the optimizer state. Loading is
`progresslm.train.models`'s.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from progresslm.train.model_card import write_model_card
from progresslm.train.models import _HUB_ID, ADAPTER_CONFIG, adapter_base, is_adapter_dir, load_model, load_processor
from progresslm.train.recipe_config import RecipeError
from progresslm.train.recipes import RECIPE_FILE

log = logging.getLogger(__name__)


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "auto", eval_run: str | Path | None = None) -> Path:
    """Merge the LoRA adapter in `adapter_dir` into its base and save a full model directory (model,
    processor, and the training recipe if there is one) at `out_dir`."""
    import torch  # lazy: torch (the [hf] and [train] extras)

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
    for name in ("trainer_state.json",):  # the card reads the steps and last losses from it
        if (adapter / name).is_file():
            shutil.copy2(adapter / name, out / name)
    source = {"adapter": str(adapter.resolve()), "base": base, "dtype": dtype}
    (out / "export.json").write_text(json.dumps(source, indent=2) + "\n")
    write_model_card(out, eval_run, exported_from=str(adapter))
    log.info("merged %s into %s", adapter, out)
    return out


def export_model(
    model_dir: str | Path, out_dir: str | Path, dtype: str = "auto", processor_dir: str | Path | None = None,
    eval_run: str | Path | None = None,
) -> Path:
    """Save a full-fine-tuning output as a clean model directory: weights (safetensors), processor,
    generation config and the training recipe, without optimizer state or checkpoints. A LoRA output
    is merged (`merge_lora`). `processor_dir` gives the processor where `model_dir` has none (an
    intermediate `checkpoint-N` takes its run's)."""
    import torch  # lazy: torch (the [hf] and [train] extras)

    source = Path(model_dir).expanduser()
    if is_adapter_dir(source):
        return merge_lora(source, out_dir, dtype, eval_run)
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
    if (source / "trainer_state.json").is_file():
        shutil.copy2(source / "trainer_state.json", out / "trainer_state.json")
    (out / "export.json").write_text(json.dumps({"model": str(source.resolve()), "dtype": dtype}, indent=2) + "\n")
    write_model_card(out, eval_run, exported_from=str(source))
    log.info("exported %s to %s", source, out)
    return out
