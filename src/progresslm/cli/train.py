"""`progresslm train sft|grpo|export|select|traces|tiny-model`: fine-tune a VLM with TRL, pick a checkpoint,
merge a LoRA adapter, or build the tiny random-init model the CPU recipes train. The default models'
own stages (`matcher`, `nano-init`) are in `progresslm.cli.train_nano`; `export`, `traces`, `tiny-model` and
`select` in `progresslm.cli.train_tools`.

    progresslm train sft --config configs/sft_qwen2_5_vl_3b.yaml [key=value ...]
    progresslm train grpo --config configs/grpo_qwen2_5_vl_3b.yaml [key=value ...]
    progresslm train export --adapter runs/sft --out runs/sft-merged

Several GPUs: `accelerate launch --config_file configs/accelerate/zero2.yaml -m progresslm.cli.main
train sft --config ...` (see docs/training.md). Problems with the recipe or the data print
`error: ...` and exit with status 2 before any model loads.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from progresslm.bench.format import BenchFormatError
from progresslm.cli.train_nano import add_parsers as add_nano_parsers
from progresslm.cli.train_tools import add_parsers as add_tool_parsers
from progresslm.train.grpo import run_grpo
from progresslm.train.recipe_config import RecipeError
from progresslm.train.recipes import load_recipe
from progresslm.train.sft import run_sft
from progresslm.train.trainer import check_trl_overrides
from progresslm.train.training_data import DatasetError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune a VLM (SFT, GRPO), merge LoRA adapters")
    commands = parser.add_subparsers(dest="train_command", metavar="SUBCOMMAND")

    for kind, text in (
        ("sft", "LoRA or full supervised fine-tuning on reasoning traces (TRL SFTTrainer)"),
        ("grpo", "GRPO with the format / anchor / score rewards (TRL GRPOTrainer)"),
    ):
        command = commands.add_parser(kind, help=text, description=text,
                                      usage=f"progresslm train {kind} --config FILE [KEY=VALUE ...] [--dry-run]")
        # --config is required, but checked in run_training: it may come after the overrides.
        command.add_argument("--config", metavar="FILE", help="recipe YAML (see configs/); required, before or after the overrides")
        # REMAINDER, not "*": argparse takes a "*" positional only once, so `--dry-run` between or before
        # overrides would leave the rest unparsed; the options among the overrides are picked out by hand.
        command.add_argument(
            "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE",
            help="recipe overrides, values read as YAML: learning_rate=2e-4 lora.rank=16 'data.files=[a.jsonl]'; "
            "--config and --dry-run may come before, between or after them",
        )  # fmt: skip
        command.add_argument(
            "--dry-run", action="store_true",
            help="check the recipe (with transformers' and TRL's own checks) and print it; load no model",
        )  # fmt: skip
        command.set_defaults(handler=run_training, kind=kind)


    add_tool_parsers(commands)

    add_nano_parsers(commands)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the recipe's or the data's fault: reported in one line, no traceback."""
    return RecipeError, DatasetError, BenchFormatError


def split_options(args: argparse.Namespace) -> argparse.Namespace:
    """Pick `--config FILE` / `--config=FILE` and `--dry-run` out of the overrides (they may be
    intermixed with them); anything else that starts with `--` is an error."""
    config, dry_run, overrides = args.config, args.dry_run, []
    items = iter(args.overrides or [])
    for item in items:
        if item == "--dry-run":
            dry_run = True
        elif item == "--config":
            config = next(items, None)
            if config is None or config.startswith("--"):
                raise RecipeError("--config needs a recipe file: --config FILE")
        elif item.startswith("--config="):
            config = item.partition("=")[2]
        elif item.startswith("--") or item in ("-h",):
            raise RecipeError(f"unknown option {item}; the options are --config FILE and --dry-run")
        else:
            overrides.append(item)
    if not config:
        raise RecipeError("--config FILE is required: the recipe to train with (see configs/)")
    return argparse.Namespace(**{**vars(args), "config": config, "dry_run": dry_run, "overrides": overrides})


def run_training(args: argparse.Namespace) -> int:
    errors = _user_errors()
    try:
        args = split_options(args)
        recipe = load_recipe(args.config, args.overrides, kind=args.kind)
        if args.dry_run:
            if args.kind == "sft":
                # lazy: trl (the [train] extra), only --dry-run needs its config classes
                from trl import SFTConfig as config_class
            else:
                from trl import GRPOConfig as config_class
            check_trl_overrides(recipe, config_class)
            print(yaml.safe_dump({"kind": recipe.kind, **recipe.to_dict()}, sort_keys=False), end="")
            return 0
        out = (run_sft if args.kind == "sft" else run_grpo)(recipe)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained model in {out}")
    print(f"evaluate: progresslm eval --backend hf --model {out}")
    return 0


