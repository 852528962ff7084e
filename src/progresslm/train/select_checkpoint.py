"""Pick the training checkpoint that does best on tasks it never trained on.

A model trained from scratch on a few dozen simulated tasks can keep lowering its training loss while
it learns those tasks by heart ("this picture of this task is 40 %") instead of comparing the
observation with the demonstration. Held-out tasks tell the two apart: every `checkpoint-*` of a
training output (and the output itself) is evaluated greedily on the same fixed subset of a
benchmark whose tasks training never saw (for ProgressLM-nano, the simulator's `rl` pool before GRPO
uses it), and the checkpoint with the best selection score is copied out with its processor.

The selection score (lower is better) is the mean NSE over the answerable splits present, plus
`na_weight` times the share of wrong answerability calls (answerable answered N/A, or unanswerable
answered with a number), both in percent; every figure is printed and written to `select.json`.

    progresslm train select --runs runs/nano/sft --bench 'rl/*.jsonl' --image-root images \\
        --per-file 60 --out runs/nano/sft-best
"""

from __future__ import annotations

import filecmp
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from progresslm.backends.base import BackendOptions
from progresslm.evaluation import EvalConfig, evaluate
from progresslm.metrics import selection_score
from progresslm.train.export_model import export_model
from progresslm.train.models import PROCESSOR_FILES
from progresslm.types import ANSWERABLE_SPLITS

log = logging.getLogger(__name__)

SELECT_FILE = "select.json"


def candidates(runs: Sequence[str | Path]) -> list[Path]:
    """Model directories to compare: each given directory that holds a model, and its `checkpoint-N`
    subdirectories in step order. A run's root is left out when its weights are those of its last
    checkpoint (a run saves its final step twice): evaluating them again would only cost time."""
    found: list[Path] = []
    for run in runs:
        run = Path(run)
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such directory")
        steps = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or 0))
        found += [p for p in steps if (p / "config.json").is_file()]
        if (run / "config.json").is_file() and not (steps and _same_weights(run, steps[-1])):
            found.append(run)
    if not found:
        raise FileNotFoundError(f"no model directories (config.json) in {', '.join(map(str, runs))}")
    return found


def _same_weights(a: Path, b: Path) -> bool:
    """Whether model directories `a` and `b` hold byte-identical safetensors weight files."""
    names = sorted(p.name for p in a.glob("*.safetensors"))
    if not names or names != sorted(p.name for p in b.glob("*.safetensors")):
        return False
    return all(filecmp.cmp(a / name, b / name, shallow=False) for name in names)


def subset_bench(files: Sequence[str | Path], per_file: int, out_dir: Path, seed: int = 0) -> list[Path]:
    """The same `per_file` rows of each benchmark file, every time (seeded), written under `out_dir`
    with the files' own names so splits and image paths stay as they are."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        path = Path(path)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        rng = random.Random(f"{seed}:{path.name}")
        chosen = sorted(rng.sample(range(len(lines)), k=min(per_file, len(lines))))
        target = out_dir / path.name
        target.write_text("".join(lines[i] + "\n" for i in chosen))
        written.append(target)
    if not written:
        raise ValueError(f"the benchmark files hold no rows: {', '.join(map(str, files))}")
    return written


def _processor_dir(model_dir: Path) -> Path:
    """Where `model_dir`'s processor is: the directory itself, or for a `checkpoint-N` saved without
    one, its run's directory."""
    run = model_dir.parent if model_dir.name.startswith("checkpoint-") else model_dir
    for place in (model_dir, run):
        if any((place / name).is_file() for name in PROCESSOR_FILES):
            return place
    raise FileNotFoundError(f"{model_dir} has no processor files and neither has {run}")


def select_checkpoint(
    runs: Sequence[str | Path],
    bench: Sequence[str | Path],
    image_root: str | Path | None,
    work_dir: str | Path,
    out: str | Path | None = None,
    per_file: int = 60,
    mode: str = "two-stage",
    batch_size: int = 16,
    device: str = "cpu",
    na_weight: float = 0.5,
    order_weight: float = 0.25,
    seed: int = 0,
    hints: str | None = None,
    hints_model: str | None = None,
) -> dict:
    """Evaluate every candidate of `runs` on one fixed subset of `bench`; copy the best to `out`."""
    work = Path(work_dir)
    files = subset_bench(bench, per_file, work / "bench", seed)
    rows = []
    for model_dir in candidates(runs):
        processor_dir = _processor_dir(model_dir)
        usable = model_dir  # the backend loads the processor from the model directory: give it one
        if processor_dir != model_dir:
            usable = export_model(model_dir, work / "models" / model_dir.name, processor_dir=processor_dir)
        config = EvalConfig(
            bench=[str(f) for f in files], out=str(work / "evals" / model_dir.name), backend="hf", mode=mode,
            image_root=str(image_root) if image_root else None, bootstrap=0, floors=False, plots=False,
            hints=hints or "none", hints_model=hints_model,
            options=BackendOptions(model=str(usable), device=device, batch_size=batch_size, max_new_tokens=64, seed=seed),
        )  # fmt: skip
        metrics = evaluate(config, progress=False).metrics
        splits = metrics["splits"]
        row = {
            "model": str(model_dir),
            "score": selection_score(metrics, na_weight, order_weight),
            **{
                f"{name}_{key}": splits.get(name, {}).get(key)
                for key in ("nse", "prc", "prc_strict")
                for name in ANSWERABLE_SPLITS
            },
            "afrr": splits.get("micro", {}).get("afrr"),
            "uda": {name: s.get("uda") for name, s in splits.items() if name.endswith("_unanswerable")},
        }
        log.info("%s: selection score %.2f", model_dir, row["score"])
        rows.append(row)
    best = min(rows, key=lambda row: row["score"])
    report = {
        "bench": [str(f) for f in bench],
        "rows_per_file": per_file,
        "na_weight": na_weight,
        "order_weight": order_weight,
        "hints": hints,
        "candidates": rows,
        "best": best["model"],
    }
    if out is not None:
        best_dir = Path(best["model"])
        export_model(best_dir, out, processor_dir=_processor_dir(best_dir))
        report["out"] = str(out)
        (Path(out) / SELECT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (work / SELECT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
