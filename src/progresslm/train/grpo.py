"""`progresslm train grpo`: GRPO with the format / anchor / score rewards on TRL's GRPOTrainer.

Prompts come from `progresslm.train.training_data.grpo_records` (the evaluation prompt builder, plus the
ground-truth columns the rewards read). The three rewards of `progresslm.train.rewards` go to TRL
as three functions with `GRPOConfig.reward_weights` = the recipe's weights (1:6:3), so TRL logs each
component as `rewards/format/mean`, `rewards/ref/mean`, `rewards/score/mean`; the format function
also logs `format_rate`, `na_rate`, `hack_rate`, `false_na_rate` and `missed_na_rate` through TRL's
`log_metric` hook. Every log line lands in OUTPUT_DIR/log.jsonl as it happens.

Starting points: a base model (a fresh LoRA, or full fine-tuning), or an SFT output. An SFT LoRA
adapter keeps training as the same adapter (TRL copies it as the frozen KL reference), so the
output is again an adapter on the original base; with `lora: false` it is merged first and the
whole model trains. Rollouts use vLLM when `use_vllm` is set (TRL's own integration), else
transformers' generate.
"""

from __future__ import annotations

import logging
from pathlib import Path

from progresslm.bench.format import load_bench
from progresslm.io import expand_files, image_root_path
from progresslm.train.grpo_config import GRPORecipe, reward_config
from progresslm.train.models import adapter_base, is_adapter_dir, load_model, load_processor, resolve_model
from progresslm.train.recipes import save_recipe
from progresslm.train.rewards import make_reward_funcs
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
    grpo_trl_args,
    jsonl_log,
    lora_config,
    model_dtype,
    prepare_output_dir,
    prompt_hints,
)
from progresslm.train.training_data import grpo_records, to_dataset

log = logging.getLogger(__name__)


def grpo_dataset(recipe: GRPORecipe):
    """The recipe's GRPO prompts with their ground-truth columns, as a datasets.Dataset."""
    data = recipe.data
    samples = load_bench(expand_files(data.files)).samples[: data.max_samples]
    image_root = image_root_path(data.image_root)
    samples = augmented(samples, recipe, image_root)
    hints = prompt_hints(recipe, samples, image_root)
    return to_dataset(grpo_records(samples, image_root, mode=data.mode, skip_bad=data.skip_bad, hints=hints))


def build_grpo_trainer(recipe: GRPORecipe) -> TrainerRun:
    """Check the recipe against this machine, build the prompts, load the policy and set up TRL's
    GRPOTrainer (nothing is trained yet)."""
    from trl import GRPOConfig, GRPOTrainer  # lazy: trl (the [train] extra)


    check_trl_overrides(recipe, GRPOConfig)
    check_environment(recipe)
    out, checkpoint = prepare_output_dir(recipe)
    model_path = resolve_model(recipe.model)
    dataset = grpo_dataset(recipe)
    save_recipe(recipe, out)

    # The TRL config comes before the model: under DeepSpeed ZeRO-3 it makes from_pretrained shard on load.
    args = build_trl_config(GRPOConfig, grpo_trl_args(recipe, out))
    processor = load_processor(model_path, recipe.max_pixels)
    processor.tokenizer.padding_side = "left"  # prompts end where generation starts
    dtype = model_dtype(recipe)
    if is_adapter_dir(model_path) and recipe.lora is not None:
        log.info(
            "continuing the LoRA adapter in %s (base %s); the recipe's lora settings are not used",
            model_path,
            adapter_base(model_path),
        )
        model = load_model(model_path, dtype, merge_adapter=False, trainable_adapter=True)
        peft_config = None
    else:
        model = load_model(model_path, dtype, merge_adapter=True)
        peft_config = lora_config(recipe.lora)
    freeze_modules(model, recipe.freeze)
    reward_funcs, _ = make_reward_funcs(reward_config(recipe))
    trainer = build_trainer(
        lambda: GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config,
            callbacks=[jsonl_log(out / LOG_FILE)],
        ),
        lora_given=peft_config is not None,
    )
    return TrainerRun(trainer, processor, recipe, out, checkpoint)


def run_grpo(recipe: GRPORecipe) -> Path:
    """Train `recipe.model` with GRPO on the recipe's prompts; returns the output directory."""
    return fit(build_grpo_trainer(recipe))
