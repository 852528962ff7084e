"""`progresslm` entry point. Subcommand modules import heavy libraries only when they run,
so `progresslm --help` and `progresslm bench stats` never import torch."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from progresslm import __version__
from progresslm.cli import bench, data, evaluate, report, serve, sim, train, watch
from progresslm.cli.options import HelpFormatter

COMMANDS = (bench, sim, data, evaluate, report, train, watch, serve)


EXAMPLES = {
    (): """examples:
  progresslm eval                                         # the default model on the small simulated benchmark
  progresslm watch episode.mp4 --demo-dir keyframes/ --goal "open the drawer"
  progresslm eval --backend openai --base-url http://127.0.0.1:8000/v1 --model my-vlm --bench data/*.jsonl \\
      --image-root data/images""",
    ("bench", "stats"): """examples:
  progresslm bench stats data/*.jsonl --image-root data/images
  progresslm bench stats data/*.jsonl --json""",
    ("bench", "example"): """examples:
  progresslm bench example                                # ~/.cache/progresslm/example-v1
  progresslm bench example --out /tmp/example --seed 1""",
    ("bench", "calibrate-retrieval"): """examples:
  progresslm bench calibrate-retrieval sft/*.jsonl --image-root images --out runs/retrieval.json
  progresslm eval --backend retrieval --calibration runs/retrieval.json""",
    ("sim", "build"): """examples:
  progresslm sim build --preset small                     # 5 benchmark tasks, a few minutes on 2 cores
  progresslm sim build --preset full --workers 2          # 42 tasks: bench / sft / rl splits
  progresslm sim build --preset full --engine ray --ray-address HEAD:6379 --out /shared/sim-full   # a Ray cluster""",
    ("data", "build"): """examples:
  progresslm data build lerobot:~/datasets/my_robot --out runs/my-bench          # a LeRobot v3.0 / v2.1 folder
  progresslm data build videos:clips/ --keyframes uniform:4 --splits bench:0.5,sft:0.5 --out runs/clips-bench
  progresslm data build hdf5:demo.hdf5 --task "lift the cube" --out runs/lift-bench
  progresslm data build videos:/shared/clips --engine ray --ray-address HEAD:6379 --out /shared/clips-bench""",
    ("data", "export-lerobot"): """examples:
  progresslm data export-lerobot videos:clips/ --out datasets/clips-lerobot     # key steps -> subtask_index
  progresslm data export-lerobot hdf5:demo.hdf5 --task "lift the cube" --codec libsvtav1 --size 256 --out datasets/lift
  progresslm data build lerobot:datasets/clips-lerobot --keyframes column:subtask_index --out runs/clips-bench""",
    ("data", "episodes"): """examples:
  progresslm data episodes lerobot:~/datasets/my_robot
  progresslm data episodes frames:recordings/ --fps 15""",
    ("sim", "export-videos"): """examples:
  progresslm sim export-videos --tasks drawer-open-v3 button-press-v3 --episodes 3 --out runs/sim-videos
  progresslm data build videos:runs/sim-videos --out runs/sim-videos-bench""",
    ("sim", "tasks"): """examples:
  progresslm sim tasks""",
    ("eval",): """examples:
  progresslm eval                                         # the default model, small simulated benchmark
  progresslm eval --backend nano --swap-demos --limit 300 # a stratified subset, with swapped demonstrations
  progresslm eval --backend openai --base-url http://127.0.0.1:8000/v1 --model my-vlm --concurrency 16 \\
      --bench data/*.jsonl --image-root data/images --out runs/my-vlm""",
    ("report",): None,  # its own epilog
    ("train", "sft"): """examples:
  progresslm train sft --config configs/sft_qwen2_5_vl_3b.yaml
  progresslm train sft --config configs/sft_tiny_cpu.yaml model=runs/tiny-vlm learning_rate=1e-3 --dry-run""",
    ("train", "grpo"): """examples:
  progresslm train grpo --config configs/grpo_qwen2_5_vl_3b.yaml model=runs/sft-qwen2.5-vl-3b
  progresslm train grpo --config configs/grpo_tiny_cpu.yaml num_generations=4 --dry-run""",
    ("train", "export"): """examples:
  progresslm train export --adapter runs/sft --out runs/sft-merged
  progresslm train export --model runs/nano/grpo --out runs/nano-release""",
    ("train", "traces"): """examples:
  progresslm train traces --bench sft/*.jsonl --image-root images --backend openai --model gpt-4o \\
      --out runs/traces.jsonl --concurrency 8""",
    ("train", "tiny-model"): """examples:
  progresslm train tiny-model --out runs/tiny-vlm""",
    ("train", "select"): """examples:
  progresslm train select --runs runs/nano/sft --bench 'rl/*.jsonl' --image-root images --out runs/nano/sft-best""",
    ("train", "matcher"): """examples:
  progresslm train matcher --train 'sft/*.jsonl' --val 'rl/*.jsonl' --image-root images --out runs/nano/matcher""",
    ("train", "nano-init"): """examples:
  progresslm train nano-init --config configs/nano_vlm.yaml --out runs/nano/init""",
    ("watch",): """examples:
  progresslm watch episode.mp4 --demo-dir keyframes/ --goal "open the drawer" --video
  progresslm watch frames/ --demo k0.png k1.png k2.png --goal "stack the cups" --fps 5 --backend pixel-nn""",
    ("serve",): """examples:
  progresslm serve --port 8000                            # the default model on loopback
  progresslm serve --backend hf --model runs/sft --device cuda --batch-size 16 --server-api-key-env KEY""",
}


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="progresslm",
        description="Progress reasoning for vision-language models: benchmarks, evaluation, training.",
    )
    parser.add_argument("--version", action="version", version=f"progresslm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    for path, sub in _subparsers(parser):  # every help shows defaults and ends with examples
        sub.formatter_class = HelpFormatter
        if not sub.epilog and EXAMPLES.get(path):
            sub.epilog = EXAMPLES[path]
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (not the one at set-up), so a redirected or
    captured stderr gets the package's messages."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """The package's own logger only: INFO (DEBUG with -v, ERROR with --quiet) to stderr. Third-party loggers
    (httpx writes a line per HTTP request at INFO, PyOpenGL, uvicorn's access log) stay at WARNING."""
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    package = logging.getLogger("progresslm")
    package.setLevel(level)
    if not any(getattr(h, "_progresslm", False) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._progresslm = True
        package.addHandler(handler)
        package.propagate = False
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "OpenGL", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if quiet:  # transformers' "Loading weights" bars (and the hub's) read this when they are made
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        if "huggingface_hub" in sys.modules:  # it read the variable when it was imported
            sys.modules["huggingface_hub"].utils.disable_progress_bars()


def command_line(argv: list[str]) -> str:
    """The command as typed, quoted so that it can be pasted back into a shell (`shlex.join`): a build's card
    records it (`--task 'lift the cube'`, not `--task lift the cube`)."""
    return shlex.join(["progresslm", *argv])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = command_line(argv)
    configure_logging(verbose=args.verbose, quiet=getattr(args, "quiet", False))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
