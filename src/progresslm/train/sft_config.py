"""The SFT recipe (`progresslm train sft`): LoRA or full fine-tuning on reasoning traces, TRL's `SFTConfig` built from
it by `progresslm.train.trainer.sft_trl_args`."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass

from progresslm.train.recipe_config import Recipe


@dataclass
class SFTRecipe(Recipe):
    """LoRA (or full) supervised fine-tuning on reasoning traces. Defaults: docs/protocol.md §6."""

    max_length: int | None = None  # no truncation: cutting a prompt would cut its image tokens

    kind: typing.ClassVar[str] = "sft"

    def check(self, fail: Callable[[str, str, str], None]) -> None:
        super().check(fail)
        if self.max_length is not None and self.max_length < 64:
            fail("max_length", f"{self.max_length} tokens cannot hold a prompt", "use null (no truncation) or more")
