"""The real-size training and evaluation paths on the CPU (issue 29): a random-init model of Qwen2.5-VL-3B's shape
through the shipped recipes and `progresslm eval --backend hf`, printing per stage the wall time, peak RSS,
trainable parameters and the LoRA modules found.

    nice -n 19 python benchmarks/full_size_dry_run.py --work runs/dry-run          # the real shape (~35 min here)
    python benchmarks/full_size_dry_run.py --work runs/dry-run-small --reduced     # the same path, 2 layers (~1 min)

Stages, each in its own process (so each peak RSS is that stage's alone, and one model is in memory at a time):

1. build: `benchmarks/qwen2_5_vl_3b_shape.py` (real sizes, processor settings, chat template; small vocabulary).
2. sft: `configs/sft_qwen2_5_vl_3b.yaml` with `max_steps=1 batch_size=1 per_device_batch_size=1` and the CPU
   (`use_cpu=true`), model and output_dir pointed here; everything else as shipped (LoRA all-linear, bf16,
   gradient checkpointing, max_pixels 50176, 4 dataloader workers).
3. grpo: `configs/grpo_qwen2_5_vl_3b.yaml` from the SFT adapter with one step of 4 completions of at most 16 tokens
   (`max_steps=1 batch_size=4 per_device_batch_size=4 num_generations=4 max_completion_length=16`),
   `use_vllm=false use_cpu=true`.
4. eval: `progresslm eval --backend hf` of the GRPO adapter on the first visual samples, `--max-new-tokens 16`.

The data is laid out where the recipes look for it (`$PROGRESSLM_HOME/sim-full-s0-v4/{sft,rl}/*.jsonl` and
`images/`), so their `data` sections run unchanged: the visual and text samples of `tests/fixtures/sim_sample`
(224 px simulator frames, the recipes' pixel budget) and the unanswerable files of the drawn example benchmark
(112 px). Not part of `make test`; the figures are in docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SFT_RECIPE = ROOT / "configs" / "sft_qwen2_5_vl_3b.yaml"
GRPO_RECIPE = ROOT / "configs" / "grpo_qwen2_5_vl_3b.yaml"
FIXTURE = ROOT / "tests" / "fixtures" / "sim_sample"
POOL = "sim-full-s0-v4"  # the folder the shipped recipes read under $PROGRESSLM_HOME
FROM_FIXTURE = ("visual_same_view", "visual_cross_view", "text-normal")
FROM_EXAMPLE = ("visual-unanswerable", "text-unanswerable")
ROWS_PER_FILE = 2
RESULT = "STAGE-RESULT "

SFT_OVERRIDES = ["max_steps=1", "batch_size=2", "per_device_batch_size=2", "use_cpu=true"]
GRPO_OVERRIDES = ["max_steps=1", "batch_size=4", "per_device_batch_size=4", "num_generations=4",
                  "max_completion_length=16", "use_vllm=false", "use_cpu=true"]  # fmt: skip
EVAL_FILES = ("visual_same_view", "visual_cross_view")
EVAL_SAMPLES = 4
EVAL_TOKENS = 16


# -- data ---------------------------------------------------------------------------------------------------------


def lay_out_data(home: Path) -> Path:
    """`home/sim-full-s0-v4/{sft,rl}/<the recipes' five files>` and one `images/` for both sources."""
    pool = home / POOL
    if (pool / "DONE").is_file():
        return pool
    example = _example_benchmark(home)
    images = pool / "images"
    images.mkdir(parents=True, exist_ok=True)
    for source in (FIXTURE / "images", example / "images"):  # copies: eval refuses images behind symlinks
        shutil.copytree(source, images, dirs_exist_ok=True)
    for split in ("sft", "rl"):
        (pool / split).mkdir(parents=True, exist_ok=True)
        for stem in FROM_FIXTURE:
            shutil.copyfile(FIXTURE / f"{stem}.jsonl", pool / split / f"{stem}.jsonl")
        for stem in FROM_EXAMPLE:  # as many rows as the fixture has per file, so no file dominates the draw
            rows = (example / f"{stem}.jsonl").read_text().splitlines(keepends=True)[:ROWS_PER_FILE]
            (pool / split / f"{stem}.jsonl").write_text("".join(rows))
    (pool / "DONE").write_text("")
    return pool


def _example_benchmark(home: Path) -> Path:
    subprocess.run([sys.executable, "-m", "progresslm.cli.main", "bench", "example"], check=True,
                   env={**os.environ, "PROGRESSLM_HOME": str(home)}, stdout=subprocess.DEVNULL)  # fmt: skip
    return home / "example-v1"


# -- what a stage reports -----------------------------------------------------------------------------------------


def group(name: str) -> str:
    """A module name with the PEFT prefix off and block numbers as N: model.visual.blocks.N.attn.qkv."""
    return re.sub(r"\.\d+(?=\.|$)", ".N", name.removeprefix("base_model.model."))


def lora_summary(model) -> dict:
    """Trainable and total parameters, and the LoRA-wrapped modules grouped by name with block numbers as N."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    names = [name for name, module in model.named_modules() if hasattr(module, "lora_A") and name]
    groups = Counter(group(name) for name in names)
    return {"trainable": trainable, "total": total, "lora_modules": len(names), "lora_groups": dict(sorted(groups.items()))}


def watch_gradients(trainer, seen: dict) -> None:
    """At the first optimizer step, count the LoRA modules whose weights got a non-zero gradient, and name the
    groups of those that got none (a frozen path, e.g. gradient checkpointing cutting the graph, shows here)."""
    from transformers import TrainerCallback

    class Gradients(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if seen or model is None:
                return
            modules: dict[str, bool] = {}
            for name, parameter in model.named_parameters():
                if ".lora_" in name and parameter.requires_grad:
                    module = name.split(".lora_")[0]
                    moved = parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
                    modules[module] = modules.get(module, False) or moved
            seen["lora_with_gradient"] = sum(modules.values())
            seen["lora_without_gradient"] = dict(Counter(group(name) for name, moved in modules.items() if not moved))

    trainer.add_callback(Gradients())


def watch_forwards(model, seen: list, keep: int = 3) -> None:
    """Record the input shapes of the model's first `keep` forward passes (sequence length, image patches).
    A forward hook rather than a collator wrapper: the collator runs in the dataloader's worker processes."""

    def record(module, args, kwargs):
        if len(seen) < keep:
            seen.append({key: list(value.shape) for key, value in kwargs.items() if hasattr(value, "shape")})

    model.register_forward_pre_hook(record, with_kwargs=True)


def logged(trainer, keys: tuple[str, ...]) -> dict:
    """The first logged value of each key the trainer logged (loss, rewards, completion lengths)."""
    out = {}
    for row in trainer.state.log_history:
        for key in keys:
            if key in row and key not in out:
                out[key] = row[key]
    return out


# -- stages (each runs in its own process) -------------------------------------------------------------------------


def stage_build(work: Path, reduced: bool) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from qwen2_5_vl_3b_shape import build

    pool = work / "home" / POOL
    return build(work / "model", reduced=reduced, corpus_files=sorted(str(p) for p in (pool / "sft").glob("*.jsonl")))


def _train(kind: str, overrides: list[str]) -> dict:
    from progresslm.train.recipes import load_recipe
    from progresslm.train.trainer import fit

    recipe_path = SFT_RECIPE if kind == "sft" else GRPO_RECIPE
    recipe = load_recipe(recipe_path, overrides)
    if kind == "sft":
        from progresslm.train.sft import build_sft_trainer as build_trainer
    else:
        from progresslm.train.grpo import build_grpo_trainer as build_trainer
    run = build_trainer(recipe)
    summary = lora_summary(run.trainer.model)
    batches: list = []
    watch_forwards(run.trainer.model, batches)
    gradients: dict = {}
    watch_gradients(run.trainer, gradients)
    began = time.perf_counter()
    fit(run)
    summary["train_seconds"] = round(time.perf_counter() - began, 1)
    summary["batches"] = batches
    summary.update(gradients)
    summary["logged"] = logged(run.trainer, ("loss", "train_loss", "reward", "completions/mean_length", "entropy", "kl"))
    summary["dtype"] = str(next(run.trainer.model.parameters()).dtype).removeprefix("torch.")
    summary["recipe"] = f"{recipe_path.relative_to(ROOT)} {' '.join(overrides)}"
    return summary


def stage_sft(work: Path) -> dict:
    return _train("sft", [f"model={work / 'model'}", f"output_dir={work / 'sft'}", *SFT_OVERRIDES])


def stage_grpo(work: Path) -> dict:
    return _train("grpo", [f"model={work / 'sft'}", f"output_dir={work / 'grpo'}", *GRPO_OVERRIDES])


def stage_eval(work: Path) -> dict:
    from progresslm.cli.main import main

    pool = work / "home" / POOL
    out = work / "eval"
    argv = ["eval", "--backend", "hf", "--model", str(work / "grpo"), "--bench",
            *(str(pool / "rl" / f"{stem}.jsonl") for stem in EVAL_FILES), "--image-root", str(pool / "images"),
            "--first", str(EVAL_SAMPLES), "--max-new-tokens", str(EVAL_TOKENS), "--device", "cpu",
            "--dtype", "bfloat16", "--batch-size", "1", "--out", str(out), "--quiet", "--no-plots",
            "--bootstrap", "0"]  # fmt: skip
    code = main(argv)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    replies = [row for row in rows if "reply" in row]
    return {"exit_code": code, "samples": len(replies), "argv": " ".join(argv[:3] + ["..."]),
            "prompt_tokens": [row.get("prompt_tokens") for row in replies],
            "first_reply": repr((replies[0].get("reply") or "")[:60]) if replies else None}  # fmt: skip


STAGES = {"build": stage_build, "sft": stage_sft, "grpo": stage_grpo, "eval": stage_eval}


def run_stage(name: str, work: Path, reduced: bool) -> dict:
    """One stage in a child process: its own result plus wall time and peak RSS (os.wait4's ru_maxrss)."""
    command = [sys.executable, __file__, "--stage", name, "--work", str(work)] + (["--reduced"] if reduced else [])
    env = {**os.environ, "PROGRESSLM_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    began = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    result = None
    for line in child.stdout:
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
        else:
            print(line, end="", flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    return {"stage": name, "exit_code": code, "wall_s": round(wall, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2), **(result or {})}  # fmt: skip


def show(row: dict) -> None:
    line = f"== {row['stage']}: {row['wall_s']} s wall, peak RSS {row['peak_rss_gib']} GiB, exit {row['exit_code']}"
    if "trainable" in row:
        line += f", trainable {row['trainable']:,} of {row['total']:,} parameters ({row['dtype']})"
    if "parameters" in row:
        line += f", {row['parameters']:,} parameters ({row['vision_parameters']:,} vision)"
    print(line, flush=True)
    if "lora_groups" in row:
        print(f"   LoRA on {row['lora_modules']} modules:", flush=True)
        for group, count in row["lora_groups"].items():
            print(f"     {count:4d} x {group}", flush=True)
    if "lora_with_gradient" in row:
        missing = row["lora_without_gradient"] or "none"
        print(f"   LoRA modules with a gradient at the step: {row['lora_with_gradient']}; without: {missing}", flush=True)
    for key in ("batches", "logged", "samples", "prompt_tokens", "first_reply", "recipe"):
        if key in row:
            print(f"   {key}: {row[key]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "dry-run", help="folder for everything written")
    parser.add_argument("--reduced", action="store_true", help="2 layers and small widths: check the path quickly")
    parser.add_argument("--stages", default="build,sft,grpo,eval", help="comma-separated, in order")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage in this process
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.stage:
        result = STAGES[args.stage](work, args.reduced) if args.stage == "build" else STAGES[args.stage](work)
        print(RESULT + json.dumps(result, default=str), flush=True)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    lay_out_data(work / "home")
    rows = []
    for name in args.stages.split(","):
        row = run_stage(name, work, args.reduced)
        rows.append(row)
        show(row)
        if row["exit_code"] != 0:
            print(f"stage {name} failed; stopping", flush=True)
            break
    (work / "figures.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(f"figures in {work / 'figures.json'}")
    return 0 if all(row["exit_code"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
