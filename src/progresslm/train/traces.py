"""Reasoning traces for SFT: written from the ground truth, or asked of a teacher model.

`template_trace` writes a two-stage reply from a sample's labels in varied phrasings, so SFT needs
no teacher. `teacher_traces` (and `write_teacher_traces`, `progresslm train traces`: row by row into a file that a
rerun completes) sends the evaluation prompt plus a hint with the labels through any
evaluation backend and keeps a reply only when its anchor and score agree with the labels (the
authors kept every reply; we drop the ones that disagree and report the drop rate).

Trace files tie each reply to its sample by more than the uid: `trace_row` adds the two-stage
prompt's hash and the labels the reply was checked against, and `match_traces` (used when SFT
loads `data.traces`) drops a trace whose prompt or labels no longer match its sample, or whose
reply does not pass `check_trace` against the sample as it is now.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from progresslm.ask import Item, ask
from progresslm.backends.base import BackendError, BackendOptions
from progresslm.backends.registry import UnknownBackendError, create_backend
from progresslm.bench.format import BenchFormatError, load_bench
from progresslm.io import expand_files, write_text_atomic
from progresslm.parsing import parse_two_stage
from progresslm.prompts import MODES, Prompt, build_prompt, percent
from progresslm.train.rewards import is_well_formed
from progresslm.types import Modality, Sample, Status

# Percentage-point offsets below this count as "at" the anchor.
AT_ANCHOR_PP = 1.0

_REF_THINK = {
    Modality.VISUAL: (
        "Comparing the current observation with the {n} demonstration keyframes, it looks most like {anchor}: "
        "the arm and the objects are arranged closest to that frame.",
        "The scene in the observation resembles {anchor} more than any other keyframe; the neighbouring "
        "keyframes show the task further from this state.",
        "Going through the keyframes in order, the state of the task in the observation is nearest to {anchor}.",
        "The observation best matches {anchor} of the {n}: the objects are in about the same places as in that frame.",
    ),
    Modality.TEXT: (
        "Reading the {n} steps against the observation, the task state is closest to the end of {anchor}.",
        "What the observation shows fits {anchor} best; the other steps describe states further from it.",
        "Of the demonstration's steps, {anchor} is the one nearest to what the observation shows.",
        "Matching the observation to the step list, the closest point is the end of {anchor}.",
    ),
}
_SCORE_THINK = {
    "before": (
        "The observation comes {size} before {ref} ({at}): that state is not reached yet. It is about {pp} "
        "short of it{toward}, which puts the progress at about {score}.",
        "Not quite at {ref} yet; the task is roughly {points} behind its {at}{toward}. That gives about {score}.",
        "Compared with {ref} ({at}), the observation is earlier by roughly {pp}{toward}. Progress is about {score}.",
        "The work shown is {size} short of {ref}, roughly {points} before its {at}{toward}, so about {score}.",
    ),
    "at": (
        "The observation shows essentially the same state as {ref}, so the progress is about its {at}: {score}.",
        "Nothing visible separates the observation from {ref}; it is at that point, about {score}.",
        "The observation is right at {ref} ({at}), neither clearly before nor after it, giving about {score}.",
        "It matches {ref} closely, with nothing further done and nothing missing: progress about {score}.",
    ),
    "after": (
        "The observation is {size} past {ref} ({at}): about {pp} further{toward}, so the progress is about {score}.",
        "The task has moved on from {ref}; it is roughly {points} beyond its {at}{toward}. That gives about {score}.",
        "Compared with {ref} ({at}), the observation is later by about {pp}{toward}. Progress is about {score}.",
        "The state is beyond {ref}: {at} plus about {points}{toward}, so about {score}.",
    ),
}
_NA_REF_THINK = (
    "The observation does not fit this demonstration: what it shows (the object, its colour or the task itself) "
    "differs from what the demonstration {shows}, so no {unit} corresponds to it.",
    "Comparing the observation with the {unit}s, none of them matches: the scene is not the task the "
    "demonstration {shows}.",
    "The demonstration {shows} a different object or task from the one in the observation, so there is no "
    "{unit} to anchor to.",
    "No {unit} of the demonstration matches the observation; the observed scene is not the one the "
    "demonstration {shows}.",
)
_NA_SCORE_THINK = (
    "Since the observation is not part of this demonstration, its progress cannot be read from it.",
    "Without a matching {unit} there is no point on the demonstration's timeline to measure from.",
    "Progress along this demonstration is undefined for what the observation shows.",
    "Because the demonstration does not describe this observation, no percentage applies.",
)
# A teacher reply that lets on it was told the answer is no reasoning trace.
_LEAK = re.compile(
    r"ground[- ]?truth|correct answer|\bhint\b|\b(?:was|were|am|are|been) (?:told|given)\b", re.IGNORECASE
)


def score_text(fraction: float) -> str:
    """A progress fraction as a reply writes it: whole percent, or one decimal when it matters.

    >>> score_text(0.58), score_text(0.0141), score_text(1.0)
    ('58%', '1.4%', '100%')
    """
    return f"{round(fraction * 100, 1):g}%"


def _blocks(ref_think: str, ref: str, score_think: str, score: str) -> str:
    return (
        f"<ref_think>{ref_think}</ref_think>\n<ref>{ref}</ref>\n"
        f"<score_think>{score_think}</score_think>\n<score>{score}</score>"
    )


def _item_name(sample: Sample, index: int) -> str:
    """Demo item `index` (0-based) as the reasoning names it, with the progress the prompt shows."""
    demo = sample.demo
    at = percent(demo.progress_at(index))
    if demo.modality is Modality.VISUAL:
        return f"keyframe {index + 1} ({at})"
    return f'step {index + 1} ("{demo.items[index].strip()}", ending at {at})'


def _na_trace(sample: Sample, rng: random.Random) -> str:
    visual = sample.modality is Modality.VISUAL
    words = {"shows": "shows" if visual else "describes", "unit": "keyframe" if visual else "step"}
    ref_think = rng.choice(_NA_REF_THINK).format(**words)
    score_think = rng.choice(_NA_SCORE_THINK).format(**words)
    return _blocks(ref_think, "n/a", score_think, "n/a")


def _toward(sample: Sample, k: int, offset: float) -> str:
    """", about a third of the way to keyframe 4 (75%)": where the observation sits between the
    anchor and its neighbour on the side it lies, or "" when there is no neighbour there."""
    demo = sample.demo
    anchor = round(demo.progress_at(k - 1) * 100)
    neighbour = k if offset > 0 else k - 2  # 0-based index of the next or previous item
    if 0 <= neighbour < len(demo.items):
        name, other = _item_name(sample, neighbour), round(demo.progress_at(neighbour) * 100)
    elif offset < 0 and demo.modality is Modality.TEXT and k == 1:
        name, other = "the start (0%)", 0
    else:
        return ""
    if other == anchor:
        return ""
    share = round(min(abs(offset) / abs(other - anchor), 1.0) * 10) * 10
    if share == 0:
        return ""
    direction = "on" if offset > 0 else "back"
    return f", about {share}% of the way {direction} to {name}"


def _value_trace(sample: Sample, rng: random.Random) -> str:
    demo, k = sample.demo, sample.closest_idx
    if k is None or not 1 <= k <= len(demo.items):
        raise ValueError(
            f"sample {sample.uid}: anchor {k!r} is not a demo item (1..{len(demo.items)}); "
            "a two-stage trace needs a valid closest_idx"
        )
    shown_score = round(sample.progress * 100, 1)
    shown_anchor = round(demo.progress_at(k - 1) * 100)
    offset = shown_score - shown_anchor
    relation = "at" if abs(offset) < AT_ANCHOR_PP else "before" if offset < 0 else "after"
    distance = f"{round(abs(offset), 1):g}"
    plural = "" if distance == "1" else "s"
    size = "a little" if abs(offset) < 5 else "somewhat" if abs(offset) < 15 else "well"
    anchor_name = _item_name(sample, k - 1)
    ref_think = rng.choice(_REF_THINK[demo.modality]).format(n=len(demo.items), anchor=anchor_name)
    score_think = rng.choice(_SCORE_THINK[relation]).format(
        ref=f"{'keyframe' if demo.modality is Modality.VISUAL else 'step'} {k}",
        at=f"{shown_anchor}%",
        pp=f"{distance} percentage point{plural}",
        points=f"{distance} point{plural}",
        size=size,
        toward=_toward(sample, k, offset),
        score=score_text(sample.progress),
    )
    return _blocks(ref_think, str(k), score_think, score_text(sample.progress))


def _short_trace(sample: Sample) -> str:
    """The two-stage reply with one-line reasoning: the anchor named, then where the observation sits."""
    if not sample.answerable:
        return _blocks("No match.", "n/a", "No progress.", "n/a")
    demo, k = sample.demo, sample.closest_idx
    if k is None or not 1 <= k <= len(demo.items):
        raise ValueError(f"sample {sample.uid}: anchor {k!r} is not a demo item (1..{len(demo.items)})")
    unit = "keyframe" if demo.modality is Modality.VISUAL else "step"
    anchor = round(demo.progress_at(k - 1) * 100)
    offset = round(sample.progress * 100, 1) - anchor
    relation = "at" if abs(offset) < AT_ANCHOR_PP else "before" if offset < 0 else "after"
    return _blocks(
        f"Closest: {unit} {k} ({anchor}%).", str(k), f"{relation.capitalize()} it.", score_text(sample.progress)
    )


TRACE_STYLES = ("full", "short")


def template_trace(
    sample: Sample, mode: str = "two-stage", rng: random.Random | None = None, style: str = "full"
) -> str:
    """A full reply written from the sample's labels, phrased as reasoning; N/A for unanswerable samples.

    `rng` picks the phrasings; by default it is seeded from the uid, so a sample always gets the same one.
    `style="short"` writes one short sentence per reasoning block (fewer tokens to train and generate).

    >>> from progresslm.types import Demo
    >>> demo = Demo(Modality.VISUAL, ("a.jpg", "b.jpg", "c.jpg"), total_steps=2)
    >>> sample = Sample("u", "t", "stack the cups", demo, "o.jpg", progress=0.6, closest_idx=2)
    >>> template_trace(sample, "direct"), parse_two_stage(template_trace(sample)).ref
    ('60%', 2)
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if style not in TRACE_STYLES:
        raise ValueError(f"unknown trace style {style!r}; valid styles: {', '.join(TRACE_STYLES)}")
    rng = rng or random.Random(sample.uid)
    if mode == "direct":
        return "n/a" if not sample.answerable else score_text(sample.progress)
    if style == "short":
        return _short_trace(sample)
    return _na_trace(sample, rng) if not sample.answerable else _value_trace(sample, rng)


@dataclass(frozen=True)
class TraceResult:
    """A teacher's reply for one sample, whether it was kept for SFT, and why (or why not)."""

    uid: str
    reply: str
    kept: bool
    reason: str


def teacher_prompt(sample: Sample, image_root: str | Path | None) -> Prompt:
    """The evaluation prompt (two-stage) plus a text part that reveals the labels and asks for reasoning
    that does not."""
    prompt = build_prompt(sample, "two-stage", image_root)
    if sample.answerable:
        answer = (
            f"The correct answer is: closest {'keyframe' if sample.modality is Modality.VISUAL else 'step'} "
            f"{sample.closest_idx}, task progress {score_text(sample.progress)}."
        )
    else:
        answer = "The demonstration does not describe what the observation shows: the correct answer is n/a."
    hint = (
        f"\n\nYou are writing a worked example for training. {answer} Reason step by step as if you did not know "
        "this: ground every statement in the images and the demonstration, and never mention that the answer was "
        "given. Reply with exactly <ref_think>...</ref_think><ref>...</ref><score_think>...</score_think>"
        "<score>...</score> and nothing else."
    )
    messages = json.loads(json.dumps(prompt.messages))
    messages[-1]["content"].append({"type": "text", "text": hint})
    digest = hashlib.sha256(json.dumps(["teacher", prompt.hash, hint]).encode()).hexdigest()[:16]
    return Prompt(messages=messages, images=prompt.images, hash=digest)


def check_trace(sample: Sample, reply: str, tolerance: float = 0.05, require_format: bool = True) -> tuple[bool, str]:
    """Whether a teacher reply agrees with the labels: same anchor, score within `tolerance` (a
    fraction: 0.05 is 5 percentage points), N/A in both for unanswerable samples."""
    if _LEAK.search(reply):
        return False, "mentions that the answer was given"
    if require_format and not is_well_formed(reply):
        return False, "not exactly the four blocks with a readable ref and score"
    prediction = parse_two_stage(reply)
    if prediction.ref_status is Status.PARSE_FAILURE or prediction.status is Status.PARSE_FAILURE:
        return False, "ref or score unreadable"
    if not sample.answerable:
        if prediction.ref_status is not Status.NA or prediction.status is not Status.NA:
            return False, "a value for an unanswerable sample"
        return True, "ok"
    if prediction.ref_status is Status.NA or prediction.status is Status.NA:
        return False, "n/a for an answerable sample"
    if prediction.ref != sample.closest_idx:
        return False, f"anchor {prediction.ref} != {sample.closest_idx}"
    error = abs(prediction.score - sample.progress)
    if error > tolerance + 1e-9:
        shown = f"{score_text(prediction.score)} is {error * 100:.1f} points from {score_text(sample.progress)}"
        return False, f"score {shown}"
    return True, "ok"


def iter_teacher_traces(
    samples: Sequence[Sample],
    backend,
    image_root: str | Path | None,
    *,
    tolerance: float = 0.05,
    require_format: bool = True,
    image_store=None,
):
    """Ask `backend` (any evaluation backend, created in two-stage mode) for one trace per sample; yield each
    `(TraceResult, Sample)` as its reply arrives (in any order), so a caller can save it at once. See `check_trace`
    for what is kept."""
    if getattr(backend, "mode", "two-stage") != "two-stage":
        raise ValueError(f"teacher traces need a backend created in 'two-stage' mode, got {backend.mode!r}")
    unreadable_items: list[tuple[TraceResult, Sample]] = []

    def unreadable(item: Item, error) -> None:
        unreadable_items.append((TraceResult(item.sample.uid, "", False, f"image: {error}"), item.sample))

    items = [Item(sample, teacher_prompt(sample, image_root)) for sample in samples]
    for answer in ask(backend, items, image_store, on_image_error=unreadable):
        yield from unreadable_items
        unreadable_items.clear()
        request, reply = answer.request, answer.reply
        if reply.error:
            yield TraceResult(request.uid, reply.text, False, f"backend error: {reply.error}"), request.sample
            continue
        kept, reason = check_trace(request.sample, reply.text, tolerance, require_format)
        yield TraceResult(request.uid, reply.text, kept, reason), request.sample
    yield from unreadable_items


def teacher_traces(
    samples: Sequence[Sample],
    backend,
    image_root: str | Path | None,
    *,
    tolerance: float = 0.05,
    require_format: bool = True,
    image_store=None,
) -> list[TraceResult]:
    """`iter_teacher_traces` as a list in sample order; a sample without a reply is an error."""
    results = {result.uid: result for result, _ in iter_teacher_traces(
        samples, backend, image_root, tolerance=tolerance, require_format=require_format, image_store=image_store)}
    missing = [sample.uid for sample in samples if sample.uid not in results]
    if missing:
        raise RuntimeError(f"the backend returned no reply for {len(missing)} samples, e.g. {missing[:5]}")
    return [results[sample.uid] for sample in samples]


def drop_rate(results: Sequence[TraceResult]) -> float:
    """Share of traces dropped (0.0 for no results).

    >>> drop_rate([TraceResult("a", "", True, "ok"), TraceResult("b", "", False, "anchor 2 != 3")])
    0.5
    """
    return sum(not result.kept for result in results) / len(results) if results else 0.0


def kept_traces(results: Sequence[TraceResult]) -> dict[str, str]:
    """uid -> reply for the kept traces, the form `data.sft_records(traces=...)` takes."""
    return {result.uid: result.reply for result in results if result.kept}


def prompt_hash(sample: Sample) -> str:
    """The hash of the sample's two-stage evaluation prompt: its text and image names, not where the
    images live, so it is the same for any image root."""
    return build_prompt(sample, "two-stage", None).hash


def trace_row(result: TraceResult, sample: Sample, tolerance: float = 0.05) -> dict:
    """The JSONL row `progresslm train traces` writes for one result: the TraceResult fields plus
    `prompt_hash`, the labels it was checked against (`progress` as a fraction, `closest_idx`) and
    the score `tolerance` (a fraction), so a later load can tell that it still belongs to its sample."""
    if result.uid != sample.uid:
        raise ValueError(f"trace for {result.uid} paired with sample {sample.uid}")
    return {
        **asdict(result),
        "prompt_hash": prompt_hash(sample),
        "progress": sample.progress,
        "closest_idx": sample.closest_idx,
        "tolerance": tolerance,
    }


def trace_mismatch(sample: Sample, row: dict) -> str | None:
    """Why a trace row does not belong to `sample` (as the sample is now), or None when it does:
    another prompt hash, other labels, or a reply that `check_trace` rejects."""
    if "prompt_hash" in row and row["prompt_hash"] != prompt_hash(sample):
        return "prompt hash differs (the sample under this uid, or the prompt, changed)"
    for key, now in (("progress", sample.progress), ("closest_idx", sample.closest_idx)):
        if key in row and not _same_label(row[key], now):
            return f"{key} was {row[key]!r} when the trace was written, is {now!r} now"
    tolerance = row.get("tolerance", 0.05)
    kept, reason = check_trace(sample, str(row.get("reply", "")), tolerance=tolerance)
    return None if kept else f"reply disagrees with the labels: {reason}"


def _same_label(before, now) -> bool:
    if before is None or now is None:
        return before is None and now is None
    return abs(float(before) - float(now)) <= 1e-9


def match_traces(samples: Sequence[Sample], rows: dict[str, dict]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """uid -> reply for the samples whose trace row (from `rows`, uid -> row) still matches them,
    and (uid, reason) for the rows dropped by `trace_mismatch`. Samples without a row are skipped."""
    traces: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for sample in samples:
        row = rows.get(sample.uid)
        if row is None:
            continue
        problem = trace_mismatch(sample, row)
        if problem is None:
            traces[sample.uid] = row["reply"]
        else:
            dropped.append((sample.uid, problem))
    return traces, dropped


class TraceError(ValueError):
    """A trace file that cannot be read, naming the file and line."""


def load_traces(paths: list[str]) -> dict[str, dict]:
    """uid -> trace row from trace JSONL files (rows with `uid` and `reply`, and from `progresslm train
    traces` also `prompt_hash`, `progress`, `closest_idx`, `tolerance`); rows with `kept: false` skipped."""
    traces: dict[str, dict] = {}
    for path in expand_files(paths):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TraceError(f"{path}:{number}: not JSON ({error})") from error
            if not isinstance(row, dict) or "uid" not in row or "reply" not in row:
                raise TraceError(f"{path}:{number}: a trace row needs 'uid' and 'reply'")
            if row.get("kept", True):
                traces[str(row["uid"])] = row
    return traces


def saved_traces(path: Path, samples: Sequence[Sample]) -> dict[str, dict]:
    """uid -> row of the traces already in `path` (a `progresslm train traces` output) that a rerun need not ask
    again: their sample is unchanged (`trace_mismatch`); a dropped trace was answered too, so it counts. Lines cut
    by a crash are left out, to be asked again."""
    by_uid = {sample.uid: sample for sample in samples}
    saved: dict[str, dict] = {}
    if not Path(path).exists():
        return saved
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        sample = by_uid.get(row.get("uid")) if isinstance(row, dict) else None
        if sample is None:
            continue
        why = trace_mismatch(sample, row)
        if why is None or (row.get("kept") is False and why.startswith("reply disagrees")):
            saved[sample.uid] = row
    return saved


class TeacherError(RuntimeError):
    """A `write_teacher_traces` run that stopped (bad benchmark, unknown or failing teacher): why, and how many
    traces stay written."""


@dataclass
class TraceFile:
    """What `write_teacher_traces` left in its file: every row by uid, and how many an earlier run had written."""

    path: Path
    rows: dict[str, dict]
    reused: int

    @property
    def results(self) -> list[TraceResult]:
        return [TraceResult(row["uid"], row["reply"], row["kept"], row["reason"]) for row in self.rows.values()]


def write_teacher_traces(
    bench: Sequence[str],
    out: str | Path,
    backend: str,
    options: BackendOptions,
    *,
    image_root: str | Path | None = None,
    tolerance: float = 0.05,
    progress: bool = True,
) -> TraceFile:
    """`progresslm train traces`: ask the teacher `backend` (created in two-stage mode with `options`) for a trace
    of every sample of the benchmark files, each row appended to `out` as its reply arrives (`trace_row`). The rows
    of an earlier run that still hold (`saved_traces`) are kept and not asked again; a line cut by a crash, or a
    changed sample, is asked again. Raises TeacherError; on Ctrl-C the rows written so far stay."""
    out = Path(out)
    rows: dict[str, dict] = {}
    try:
        samples = load_bench(list(bench)).samples
        rows = saved_traces(out, samples)
        todo = [s for s in samples if s.uid not in rows]
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():  # keep the rows that still hold (a line cut by a crash, or a changed sample, is asked again)
            write_text_atomic(out, "".join(json.dumps(row) + "\n" for row in rows.values()))
        if todo:
            teacher = create_backend(backend, options, "two-stage")
            bar = tqdm(total=len(todo), desc=f"traces {backend}", unit="sample", disable=not progress)
            try:
                with out.open("a", encoding="utf-8") as handle:
                    for result, sample in iter_teacher_traces(todo, teacher, image_root, tolerance=tolerance):
                        row = trace_row(result, sample, tolerance)
                        handle.write(json.dumps(row) + "\n")
                        handle.flush()
                        rows[sample.uid] = row
                        bar.update(1)
            finally:
                bar.close()
                teacher.close()
    except (BenchFormatError, BackendError, UnknownBackendError) as error:
        saved = f"; the {len(rows)} traces written so far stay in {out}" if out.exists() else ""
        raise TeacherError(f"{error}{saved}") from error
    return TraceFile(out, rows, len(samples) - len(todo))
