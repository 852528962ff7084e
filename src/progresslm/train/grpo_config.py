"""The GRPO recipe (`progresslm train grpo`): the format / anchor / score rewards and the objective pinned to the
paper's, TRL's `GRPOConfig` built from it by `progresslm.train.trainer.recipe_trl_args`."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from progresslm.train.recipe_config import Recipe
from progresslm.train.rewards import RewardConfig

# GRPOConfig's accepted values in TRL 1.16 (checked against TRL's field help in the tests).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPORecipe(Recipe):
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

    def check(self, fail: Callable[[str, str, str], None]) -> None:
        super().check(fail)
        _check_grpo(self, fail)
        _check_reward(self, fail)


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


def reward_config(recipe: GRPORecipe) -> RewardConfig:
    """The recipe's reward section as a `progresslm.train.rewards.RewardConfig`."""
    settings = dict(recipe.reward)
    if "weights" in settings:
        settings["weights"] = tuple(float(w) for w in settings["weights"])
    return RewardConfig(**settings)
