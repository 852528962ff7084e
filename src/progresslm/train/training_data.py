"""Training datasets in the form TRL takes for vision-language models, from any benchmark-format JSONL.

Rows use `progresslm.prompts.build_prompt`, the prompt evaluation uses, so a trained model sees at
evaluation time exactly what it saw in training. SFT rows hold `messages` (the prompt plus the
assistant's reply) and `images`; GRPO rows hold `prompt`, `images` and the ground-truth columns the
rewards read (`gt_ref`, `gt_progress`, `n_items`). `to_dataset` turns rows into a `datasets.Dataset`
whose images are read from disk when a row is accessed.

Rows that cannot train (an image file missing, an answerable sample without labels) are reported
by uid in one `DatasetError`, or dropped with a warning when `skip_bad=True`.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from progresslm.prompts import MODES, Prompt, build_prompt
from progresslm.train.traces import template_trace
from progresslm.types import Sample

SHOWN_BAD = 10  # uids named in a DatasetError; the rest are counted


class DatasetError(ValueError):
    """Rows that cannot be used for training, named by uid with the reason."""


def label_problem(sample: Sample, mode: str) -> str | None:
    """Why a sample's labels cannot train in `mode`, or None when they can.

    A record with no label fields at all (`labelled` False) is a bad row, never an N/A target:
    only an explicit "n/a" label teaches the model to answer n/a."""
    if not getattr(sample, "labelled", True):
        return "no labels (the record has no progress_score / closest_idx fields)"
    if sample.progress is None:
        if sample.closest_idx is not None:
            return f"progress is n/a but closest_idx is {sample.closest_idx}"
        return None
    if not 0.0 <= sample.progress <= 1.0:
        return f"progress {sample.progress * 100:g}% outside 0..100%"
    if mode == "two-stage":
        if sample.closest_idx is None:
            return "answerable but closest_idx is n/a"
        if not 1 <= sample.closest_idx <= len(sample.demo.items):
            return f"closest_idx {sample.closest_idx} outside 1..{len(sample.demo.items)}"
    return None


def _image_problem(prompt: Prompt) -> str | None:
    parts = sum(part["type"] == "image" for message in prompt.messages for part in message["content"])
    if parts != len(prompt.images):
        return f"{parts} image parts but {len(prompt.images)} image files"
    missing = [path for path in prompt.images if not Path(path).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"missing image {missing[0]}{more}"
    return None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")


def _finish(rows: list[dict], bad: list[tuple[str, str]], total: int, skip_bad: bool) -> list[dict]:
    """Raise on bad rows, or drop them with a warning when `skip_bad`."""
    if not bad:
        return rows
    if skip_bad:
        warnings.warn(
            f"dropped {len(bad)} of {total} rows that cannot train (first: {bad[0][0]}: {bad[0][1]})", stacklevel=4
        )
        return rows
    shown = "; ".join(f"{uid}: {reason}" for uid, reason in bad[:SHOWN_BAD])
    more = f"; and {len(bad) - SHOWN_BAD} more" if len(bad) > SHOWN_BAD else ""
    raise DatasetError(
        f"{len(bad)} of {total} rows cannot train: {shown}{more}. Fix the files or labels (check --image-root), "
        "or pass skip_bad=True to drop these rows"
    )


def _rows(
    samples, image_root, mode: str, skip_bad: bool, make_row, extra_problem=lambda sample: None, hints=None
) -> list[dict]:
    """One row per trainable sample (same prompt as evaluation, with `hints[uid]` when given); bad ones
    reported by uid (see `_finish`)."""
    _check_mode(mode)
    hints = hints or {}
    rows, bad, total = [], [], 0
    for sample in samples:
        total += 1
        prompt = build_prompt(sample, mode, image_root, hints=hints.get(sample.uid))
        problem = _image_problem(prompt) or label_problem(sample, mode) or extra_problem(sample)
        if problem is not None:
            bad.append((sample.uid, problem))
            continue
        rows.append(make_row(sample, prompt))
    return _finish(rows, bad, total, skip_bad)


def sft_records(
    samples: Iterable[Sample],
    image_root: str | Path | None,
    mode: str = "two-stage",
    traces: dict[str, str] | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    trace_style: str = "full",
    hints: dict[str, str] | None = None,
) -> list[dict]:
    """SFT rows: `messages` (prompt + assistant reply), `images` (paths, in image-part order), `uid`.

    The reply is `traces[uid]` when `traces` is given (a sample without one is a bad row, so pass
    only the samples that have a trace, or `skip_bad=True`), else a `template_trace` whose phrasing
    is drawn from `seed` and the uid, so rows do not depend on sample order; `trace_style` "short"
    writes one-line reasoning (`template_trace`).
    """

    def reply(sample: Sample) -> str:
        if traces is not None:
            return traces[sample.uid]
        return template_trace(sample, mode, random.Random(f"{seed}:{sample.uid}"), style=trace_style)

    def row(sample: Sample, prompt) -> dict:
        assistant = {"role": "assistant", "content": [{"type": "text", "text": reply(sample)}]}
        return {"messages": [*prompt.messages, assistant], "images": [str(p) for p in prompt.images], "uid": sample.uid}

    def no_trace(sample: Sample) -> str | None:
        return "no trace for this uid" if traces is not None and sample.uid not in traces else None

    return _rows(samples, image_root, mode, skip_bad, row, no_trace, hints=hints)


def grpo_records(
    samples: Iterable[Sample],
    image_root: str | Path | None,
    mode: str = "two-stage",
    skip_bad: bool = False,
    hints: dict[str, str] | None = None,
) -> list[dict]:
    """GRPO rows: `prompt` (conversational), `images` (paths), `uid` and the reward columns `gt_ref`
    (1-based anchor or None), `gt_progress` (fraction or None), `n_items` (demo items N), `split`."""

    def row(sample: Sample, prompt) -> dict:
        return {
            "prompt": prompt.messages,
            "images": [str(p) for p in prompt.images],
            "uid": sample.uid,
            "gt_ref": sample.closest_idx if sample.answerable else None,
            "gt_progress": sample.progress,
            "n_items": len(sample.demo.items),
            "split": sample.split,
        }

    return _rows(samples, image_root, mode, skip_bad, row, hints=hints)


def to_dataset(records: Sequence[dict], load_images: bool = True):
    """A `datasets.Dataset` of SFT or GRPO rows.

    Messages and prompts are stored as JSON, so they come back exactly as built (no `None` keys
    from Arrow's struct merging). With `load_images`, the `images` column is a list of
    `datasets.Image` features: paths on disk, decoded to RGB PIL images when a row is accessed,
    which is what TRL's SFTTrainer and GRPOTrainer pass to a Qwen2.5-VL processor. No transform is
    attached, so `remove_unused_columns` only matters for the reward columns (GRPO needs False).
    """
    from datasets import Dataset, Features, Image, Json, List, Value  # lazy: datasets (the [data] and [train] extras)

    if not records:
        raise DatasetError("no rows to build a dataset from; check the benchmark files and skip_bad")
    columns = {
        "messages": Json(),
        "prompt": Json(),
        "images": List(Image(mode="RGB")) if load_images else List(Value("string")),
        "uid": Value("string"),
        "gt_ref": Value("int64"),
        "gt_progress": Value("float64"),
        "n_items": Value("int64"),
        "split": Value("string"),
    }
    keys = list(records[0])
    unknown = [key for key in keys if key not in columns]
    if unknown:
        raise DatasetError(f"rows have columns {unknown} that to_dataset does not know; known: {sorted(columns)}")
    features = Features({key: columns[key] for key in keys})
    return Dataset.from_list(list(records), features=features)
