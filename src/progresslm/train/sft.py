"""`progresslm train sft`: LoRA (or full) supervised fine-tuning with TRL's SFTTrainer.

The training rows come from `progresslm.train.training_data.sft_records` (the evaluation prompt builder plus
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

import logging
import warnings
from pathlib import Path

from progresslm.bench.format import load_bench
from progresslm.io import expand_files, image_root_path
from progresslm.train.models import is_adapter_dir, load_model, load_processor, resolve_model
from progresslm.train.recipe_config import RecipeError
from progresslm.train.recipes import save_recipe
from progresslm.train.sft_config import SFTRecipe
from progresslm.train.traces import TraceError, load_traces, match_traces
from progresslm.train.trainer import (
    LOG_FILE,
    TrainerRun,
    augmented,
    build_trainer,
    build_trl_config,
    check_environment,
    check_trl_overrides,
    fit,
    freeze_modules,
    jsonl_log,
    lora_config,
    model_dtype,
    prepare_output_dir,
    prompt_hints,
    sft_trl_args,
)
from progresslm.train.training_data import sft_records, to_dataset

log = logging.getLogger(__name__)

def as_prompt_completion(dataset):
    """SFT rows (`messages` = system, user, assistant) in TRL's prompt/completion form, so that only
    the reply is trained on: the prompt is every message but the last, the completion the last."""
    from datasets import Json  # lazy: datasets (the [data] and [train] extras)

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


def sft_dataset(recipe: SFTRecipe):
    """The recipe's SFT rows as a datasets.Dataset in prompt/completion form."""
    data = recipe.data
    samples = load_bench(expand_files(data.files)).samples[: data.max_samples]
    traces = None
    if data.traces:
        try:
            traces, dropped = match_traces(samples, load_traces(data.traces))
        except TraceError as error:
            raise RecipeError(f"data.traces: {error}") from error
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
    from trl import SFTConfig, SFTTrainer  # lazy: trl (the [train] extra)


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
