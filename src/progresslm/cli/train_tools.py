"""`progresslm train export|traces|tiny-model|select`: the steps around training (`sft` and `grpo` are in
`progresslm.cli.train`): merge or copy a training output, write reasoning traces with a teacher model, build the
tiny random-init model the CPU recipes train, and pick the best checkpoint on held-out tasks.

    progresslm train export --adapter runs/sft --out runs/sft-merged
    progresslm train select --runs runs/nano/sft --bench 'rl/*.jsonl' --image-root images --out runs/nano/sft-best
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from progresslm.bench.format import BenchFormatError
from progresslm.cli.options import OptionError, add_backend_options, backend_options
from progresslm.evaluation import EvalError
from progresslm.io import expand_files, expand_path
from progresslm.train.export_model import export_model, merge_lora
from progresslm.train.recipe_config import RecipeError
from progresslm.train.select_checkpoint import select_checkpoint
from progresslm.train.tiny_model import build_tiny_qwen2_5_vl, model_settings
from progresslm.train.traces import TeacherError, drop_rate, write_teacher_traces


def add_parsers(commands) -> None:
    export = commands.add_parser(
        "export", help="a clean model directory from a training output (a LoRA adapter is merged into its base)"
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", metavar="DIR", help="a LoRA training output (adapter_config.json): merged")
    source.add_argument("--model", metavar="DIR", help="a full fine-tuning output: copied without optimizer state")
    export.add_argument("--out", required=True, metavar="DIR", help="where to write the merged model")
    export.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="weights' dtype in the export (auto: as trained)")
    export.add_argument("--eval", metavar="RUN_DIR", dest="eval_run",
                        help="a `progresslm eval --out RUN_DIR` of this model: its figures go into the model card")
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
    traces.add_argument("--backend", required=True, help="the teacher: openai, hf, vllm, replay, or module:Class")
    traces.add_argument("--tolerance", type=float, default=5.0, help="largest score error kept, in percentage points")
    traces.add_argument(
        "--out", required=True, metavar="FILE",
        help="traces JSONL (uid, reply, kept, reason, and prompt_hash, progress, closest_idx, tolerance to re-check); "
        "each row is written as its reply arrives, and a rerun of the same command asks only for what is missing",
    )  # fmt: skip
    traces.add_argument("--quiet", action="store_true", help="no progress bar")

    add_backend_options(traces, omit=("value",), model="teacher model name (openai) or path (hf, vllm)",
                        temperature="teacher sampling temperature (0: greedy)")
    traces.set_defaults(handler=run_traces)

    tiny = commands.add_parser("tiny-model", help="build the tiny random-init Qwen2.5-VL the CPU recipes train")
    tiny.add_argument("--out", required=True, metavar="DIR", help="where to save model, tokenizer and processor")
    tiny.add_argument("--image-size", type=int, default=56, help="largest image side the processor keeps (x28)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
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
    select.add_argument("--na-weight", type=float, default=0.5, help="weight of the wrong N/A calls in the score")
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
    select.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    select.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    select.add_argument("--seed", type=int, default=0, help="seed of the rows drawn from each file")
    select.set_defaults(handler=run_select)


def run_export(args: argparse.Namespace) -> int:
    try:
        if args.eval_run and not (Path(args.eval_run) / "metrics.json").is_file():
            raise RecipeError(f"--eval: {args.eval_run} holds no metrics.json; give a `progresslm eval --out` folder")
        if args.adapter:
            out = merge_lora(args.adapter, args.out, dtype=args.dtype, eval_run=args.eval_run)
        else:
            out = export_model(args.model, args.out, dtype=args.dtype, eval_run=args.eval_run)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'merged' if args.adapter else 'exported'} model in {out}")
    return 0

def run_traces(args: argparse.Namespace) -> int:
    try:
        written = write_teacher_traces(args.bench, args.out, args.backend, backend_options(args),
                                       image_root=args.image_root, tolerance=args.tolerance / 100.0,
                                       progress=not args.quiet)  # fmt: skip
    except (TeacherError, OptionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: traces so far are in {args.out}; rerun the same command to finish", file=sys.stderr)
        return 130
    results = written.results
    kept = sum(r.kept for r in results)
    print(f"{kept} of {len(results)} traces kept, drop rate {100 * drop_rate(results):.1f} % ({written.reused} reused); "
          f"in {written.path}")  # fmt: skip
    return 0


def run_tiny_model(args: argparse.Namespace) -> int:
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
