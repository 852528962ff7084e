"""The README.md a training output carries: what the model is, what it was trained on and how, and how it did.

TRL writes a generic card ("fine-tuned version of [None]", a text-generation example) into the output folder at
every checkpoint; `fit` and `progresslm train export` replace it with this one, written from the resolved recipe
(`recipe.yaml`), the trainer state (steps, last loss or reward) and, when given, the metrics of an evaluation
run (`progresslm train export --eval RUN_DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CARD_FILE = "README.md"


def _recipe(folder: Path) -> dict:
    path = folder / "recipe.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def _state(folder: Path) -> dict:
    path = folder / "trainer_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _base_model(folder: Path, recipe: dict) -> str:
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        return str(json.loads(adapter.read_text()).get("base_model_name_or_path") or recipe.get("model") or "unknown")
    return str(recipe.get("model") or "unknown")


def _last_logs(state: dict) -> dict:
    logs = [row for row in state.get("log_history", []) if isinstance(row, dict)]
    wanted = ("loss", "reward", "rewards/format/mean", "rewards/ref/mean", "rewards/score/mean")
    last: dict = {}
    for row in logs:
        last.update({k: row[k] for k in wanted if k in row})
    return last


def _results(run_dir: Path) -> list[str]:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8")) if (run_dir / "config.json").is_file() else {}
    lines = [f"`progresslm eval` on {', '.join(Path(b).name for b in config.get('bench', [])) or 'a benchmark'} "
             f"({run_dir}):", "", "| split | n | NSE ↓ | PRC ↑ | AFRR ↓ | UDA ↑ |", "|---|---:|---:|---:|---:|---:|"]
    for name, split in (metrics.get("splits") or {}).items():
        if not isinstance(split, dict) or not split.get("n"):
            continue
        cells = [split.get(k) for k in ("nse", "prc", "afrr", "uda")]
        shown = ["–" if v is None else f"{v:.1f}" for v in cells]
        lines.append(f"| {name} | {split['n']} | " + " | ".join(shown) + " |")
    swap = ((metrics.get("demo_swap") or {}).get("all") or {}).get("changed")
    if swap is not None:
        lines += ["", f"Answers changed by another task's demonstration (`--swap-demos`): {swap:.1f} %."]
    return lines


def model_card(folder: str | Path, eval_run: str | Path | None = None, exported_from: str | None = None) -> str:
    """The card for the model in `folder` (a training output or an export of one)."""
    folder = Path(folder)
    recipe, state = _recipe(folder), _state(folder)
    kind = recipe.get("kind", "model")
    base = _base_model(folder, recipe)
    lora = recipe.get("lora")
    data = recipe.get("data") or {}
    header = {"library_name": "transformers", "pipeline_tag": "image-text-to-text",
              "tags": ["progresslm", "progress-reasoning", "robotics", kind]}  # fmt: skip
    if base and not Path(base).exists():
        header["base_model"] = base
    if lora:
        header["library_name"] = "peft"
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {folder.name}", "",
             "A vision-language model for progress reasoning (docs/protocol.md in "
             "[progresslm](https://github.com/progresslm/progresslm)): given a task goal, a demonstration "
             "(keyframes or step texts) and one observation, it answers how far the task has got, or n/a.", ""]  # fmt: skip
    lines += ["## Model", "",
              f"- Base: `{base}`",
              f"- Training: {kind.upper()} with TRL, "
              + (f"LoRA rank {lora.get('rank')} (alpha {lora.get('alpha')}) on {lora.get('target_modules')}"
                 if isinstance(lora, dict) else "full fine-tuning")
              + (f"; frozen: {', '.join(recipe.get('freeze') or [])}" if recipe.get("freeze") else ""),
              f"- Reply format: `{data.get('mode', 'two-stage')}`"
              + (f", with retrieval hints (`--hints {data['hints']}`)" if data.get("hints") not in (None, "none") else ""),
              ""]  # fmt: skip
    if exported_from:
        lines += [f"Exported from `{exported_from}` by `progresslm train export`.", ""]
    files = data.get("files") or []
    lines += ["## Data", "", *(f"- `{f}`" for f in files[:12]), *(["- ..."] if len(files) > 12 else []), ""]
    extras = [f"{key} {data[key]}" for key in ("demo_cuts", "swap_negatives", "self_demos", "max_samples") if data.get(key)]
    if extras:
        lines += [f"Augmentation and limits: {', '.join(extras)}.", ""]
    steps = state.get("global_step")
    last = _last_logs(state)
    keys = ("learning_rate", "lr_scheduler", "batch_size", "epochs", "max_steps", "seed", "beta", "num_generations",
            "temperature", "reward")
    lines += ["## Recipe", "", "```yaml", yaml.safe_dump({k: recipe[k] for k in keys if k in recipe},
                                                         sort_keys=False).strip(), "```", ""]  # fmt: skip
    if steps is not None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, (int, float)))
        lines += [f"Trained {steps} steps" + (f"; last logged {shown}" if shown else "") + ".", ""]
    lines += ["## Results", ""]
    if eval_run is not None:
        lines += [*_results(Path(eval_run)), ""]
    else:
        lines += ["Not evaluated yet: `progresslm eval --backend hf --model THIS_FOLDER --swap-demos`, then "
                  "`progresslm train export --model THIS_FOLDER --out OUT --eval RUN_DIR` writes the figures here, "
                  "beside the shortcut baselines that eval reports.", ""]  # fmt: skip
    lines += ["## Use", "", "```bash", f"progresslm eval --backend hf --model {folder.name} --swap-demos",
              f"progresslm watch episode.mp4 --demo-dir keyframes/ --goal \"...\" --backend hf --model {folder.name}",
              "```", ""]  # fmt: skip
    return "\n".join(lines)


def write_model_card(folder: str | Path, eval_run: str | Path | None = None, exported_from: str | None = None) -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(model_card(folder, eval_run, exported_from), encoding="utf-8")
    return path
