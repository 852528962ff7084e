"""`progresslm train sft|grpo|export|select|traces|tiny-model`: fine-tune a VLM with TRL, pick a checkpoint,
merge a LoRA adapter, or build the tiny random-init model the CPU recipes train. The default models'
own stages (`matcher`, `nano-init`) are in `progresslm.cli.train_nano`.

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


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune a VLM (SFT, GRPO), merge LoRA adapters")
    commands = parser.add_subparsers(dest="train_command", metavar="SUBCOMMAND")

    for kind, text in (
        ("sft", "LoRA or full supervised fine-tuning on reasoning traces (TRL SFTTrainer)"),
        ("grpo", "GRPO with the format / anchor / score rewards (TRL GRPOTrainer)"),
    ):
        command = commands.add_parser(kind, help=text, description=text)
        # --config is required, but checked in run_training: it may come after the overrides.
        command.add_argument("--config", metavar="FILE", help="recipe YAML (see configs/); required")
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

    export = commands.add_parser(
        "export", help="a clean model directory from a training output (a LoRA adapter is merged into its base)"
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", metavar="DIR", help="a LoRA training output (adapter_config.json): merged")
    source.add_argument("--model", metavar="DIR", help="a full fine-tuning output: copied without optimizer state")
    export.add_argument("--out", required=True, metavar="DIR", help="where to write the merged model")
    export.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    export.set_defaults(handler=run_export)

    traces = commands.add_parser(
        "traces",
        help="reasoning traces for SFT from a teacher model (any eval backend); wrong ones are dropped",
        description="Ask a teacher (any evaluation backend, shown the ground truth and asked to reason as if it "
        "did not know it) for a two-stage reply per sample. Replies whose anchor or score disagree with the "
        "ground truth are dropped and counted. The JSONL written goes to a recipe's data.traces.",
    )
    traces.add_argument("--bench", nargs="+", required=True, metavar="FILE", help="benchmark-format JSONL files")
    traces.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name>")
    traces.add_argument("--backend", required=True, help="the teacher: openai, hf, vllm, replay, ...")
    traces.add_argument("--model", help="teacher model name or path")
    traces.add_argument("--base-url", help="OpenAI-compatible server of the teacher")
    traces.add_argument("--replies", help='replay: JSONL of {"uid": ..., "reply": ...}')
    traces.add_argument("--tolerance", type=float, default=5.0, help="largest score error kept, in percentage points")
    traces.add_argument(
        "--out", required=True, metavar="FILE",
        help="traces JSONL (uid, reply, kept, reason, and prompt_hash, progress, closest_idx, tolerance to re-check)",
    )  # fmt: skip
    traces.set_defaults(handler=run_traces)

    tiny = commands.add_parser("tiny-model", help="build the tiny random-init Qwen2.5-VL the CPU recipes train")
    tiny.add_argument("--out", required=True, metavar="DIR")
    tiny.add_argument("--image-size", type=int, default=56, help="largest image side the processor keeps (x28)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--config", metavar="FILE",
        help="YAML of model sizes (build_tiny_qwen2_5_vl's arguments, e.g. configs/nano_model.yaml) and "
        "corpus_files: benchmark JSONL whose prompts and replies the tokenizer learns from",
    )  # fmt: skip
    tiny.set_defaults(handler=run_tiny_model)

    select = commands.add_parser(
        "select",
        help="evaluate every checkpoint of a training run on held-out tasks and keep the best",
        description="Evaluate each checkpoint-N of the given training outputs (and the outputs themselves) greedily "
        "on one fixed subset of a benchmark whose tasks training never saw; the selection score is the mean NSE "
        "over the answerable splits plus --na-weight x the share of wrong N/A calls plus --order-weight x "
        "(100 - PRC-strict), so a checkpoint that answers one value per trajectory never wins. The best is copied "
        "to --out with its processor.",
    )
    select.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="training output directories")
    select.add_argument(
        "--bench", nargs="+", required=True, metavar="FILE", help="held-out benchmark JSONL (globs allowed)"
    )
    select.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name>")
    select.add_argument("--per-file", type=int, default=60, help="rows taken from each benchmark file (seeded)")
    select.add_argument("--work", metavar="DIR", help="where the evaluations go (default: OUT.select or RUN/select)")
    select.add_argument("--out", metavar="DIR", help="copy the best model here")
    select.add_argument("--na-weight", type=float, default=0.5)
    select.add_argument(
        "--order-weight",
        type=float,
        default=0.25,
        help="add this x (100 - mean PRC-strict): NSE alone can prefer a checkpoint that answers one value per "
        "trajectory (default: %(default)s)",
    )
    select.add_argument("--hints", choices=["none", "matcher"], default="none",
                        help="retrieval hints in the prompts, as the model was trained (nano: matcher)")
    select.add_argument("--hints-model", metavar="DIR", help="the matcher that writes the hints (default: shipped)")
    select.add_argument("--batch-size", type=int, default=16)
    select.add_argument("--device", default="cpu")
    select.add_argument("--seed", type=int, default=0)
    select.set_defaults(handler=run_select)

    from progresslm.cli.train_nano import add_parsers as add_nano_parsers

    add_nano_parsers(commands)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the recipe's or the data's fault: reported in one line, no traceback."""
    from progresslm.official import BenchFormatError
    from progresslm.train.config import RecipeError
    from progresslm.train.data import DatasetError

    return RecipeError, DatasetError, BenchFormatError


def split_options(args: argparse.Namespace) -> argparse.Namespace:
    """Pick `--config FILE` / `--config=FILE` and `--dry-run` out of the overrides (they may be
    intermixed with them); anything else that starts with `--` is an error."""
    from progresslm.train.config import RecipeError

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
    from progresslm.train.config import load_recipe

    errors = _user_errors()
    try:
        args = split_options(args)
        recipe = load_recipe(args.config, args.overrides, kind=args.kind)
        if args.dry_run:
            import yaml

            from progresslm.train.sft import check_trl_overrides

            if args.kind == "sft":
                from trl import SFTConfig as config_class
            else:
                from trl import GRPOConfig as config_class
            check_trl_overrides(recipe, config_class)
            print(yaml.safe_dump({"kind": recipe.kind, **recipe.to_dict()}, sort_keys=False), end="")
            return 0
        if args.kind == "sft":
            from progresslm.train.sft import run_sft as run
        else:
            from progresslm.train.grpo import run_grpo as run
        out = run(recipe)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained model in {out}")
    print(f"evaluate: progresslm eval --backend hf --model {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from progresslm.train.config import RecipeError
    from progresslm.train.export import export_model, merge_lora

    try:
        if args.adapter:
            out = merge_lora(args.adapter, args.out, dtype=args.dtype)
        else:
            out = export_model(args.model, args.out, dtype=args.dtype)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'merged' if args.adapter else 'exported'} model in {out}")
    return 0


def run_traces(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from progresslm.backends.base import BackendError, BackendOptions
    from progresslm.backends.registry import UnknownBackendError, create_backend
    from progresslm.official import BenchFormatError, load_bench
    from progresslm.train.traces import drop_rate, teacher_traces, trace_row

    try:
        samples = load_bench(args.bench).samples
        options = BackendOptions(model=args.model, base_url=args.base_url, replies=args.replies)
        backend = create_backend(args.backend, options, "two-stage")
        try:
            results = teacher_traces(samples, backend, args.image_root, tolerance=args.tolerance / 100.0)
        finally:
            backend.close()
    except (BenchFormatError, BackendError, UnknownBackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [trace_row(result, sample, args.tolerance / 100.0) for result, sample in zip(results, samples, strict=True)]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    kept = sum(r.kept for r in results)
    print(f"{kept} of {len(results)} traces kept, drop rate {100 * drop_rate(results):.1f} %; written to {out}")
    return 0


def run_tiny_model(args: argparse.Namespace) -> int:
    from progresslm.train.config import RecipeError
    from progresslm.train.tiny_model import build_tiny_qwen2_5_vl, model_settings

    try:
        settings = (
            model_settings(args.config) if args.config else {"image_size": args.image_size, "tie_embeddings": False}
        )
    except (RecipeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.get("image_size", 56) % 28:
        print(
            f"error: image size {settings['image_size']} is not a multiple of 28 (patch 14 x merge 2)", file=sys.stderr
        )
        return 2
    settings.setdefault("seed", args.seed)
    out = build_tiny_qwen2_5_vl(args.out, **settings)
    print(f"tiny model in {out}")
    return 0


def run_select(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from progresslm.evaluate import EvalError
    from progresslm.official import BenchFormatError
    from progresslm.train.config import expand_files, expand_path
    from progresslm.train.select import select_checkpoint

    try:
        if args.per_file < 1:
            raise ValueError(f"--per-file must be at least 1, got {args.per_file}")
        if args.na_weight < 0 or args.order_weight < 0:
            raise ValueError(f"--na-weight and --order-weight must be >= 0, got {args.na_weight}, {args.order_weight}")
        files = expand_files(args.bench)
        work = args.work or (f"{args.out}.select" if args.out else str(Path(args.runs[0]) / "select"))
        report = select_checkpoint(
            args.runs, files, expand_path(args.image_root) if args.image_root else None, work, out=args.out,
            per_file=args.per_file, batch_size=args.batch_size, device=args.device, na_weight=args.na_weight,
            order_weight=args.order_weight, hints=args.hints, hints_model=args.hints_model,
            seed=args.seed,
        )  # fmt: skip
    except (BenchFormatError, EvalError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in report["candidates"]:
        mark = "*" if row["model"] == report["best"] else " "
        print(f"{mark} {row['score']:8.2f}  {row['model']}")
    print(json.dumps({"best": report["best"], "out": report.get("out")}))
    return 0
