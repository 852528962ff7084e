"""Read and write the authors' JSONL release format (docs/protocol.md §2), quirks and all.

Every record becomes a `Sample` whose axes come from its content (which demo field it has, a
`camera_combination`, `n/a` labels, camera names in file names), never from the file name. Rows
with defects are kept and reported with file and line; nothing is silently fixed or dropped.
How each field was spelled (int or string, list or string, "20%" or "20.00%") is remembered so
that writing the samples back gives the same records.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from progresslm.io import atomic_path
from progresslm.types import Demo, Modality, Sample, View, camera_of

# The five files of a release split, by axis (the authors' names, hyphens and underscores as they spell them).
FILE_STEMS = ("visual_same_view", "visual_cross_view", "visual-unanswerable", "text-normal", "text-unanswerable")
KNOWN_FIELDS = (
    "id",
    "task_goal",
    "visual_demo",
    "text_demo",
    "total_steps",
    "stage_to_estimate",
    "closest_idx",
    "delta",
    "progress_score",
    "data_source",
    "camera_combination",
)
NA_MARKERS = {"n/a", "na", "none", ""}
# Text the release's editing step left in instead of an edited goal or step.
PLACEHOLDER = re.compile(
    r"placeholder|lorem ipsum|\bTODO\b|\bXXX\b|<[a-z_ ]*>|\{[a-z_ ]*\}|^\s*\[?(edited|new|rewritten) (goal|task|step)",
    re.IGNORECASE,
)


class BenchFormatError(ValueError):
    """A benchmark file that cannot be read: says which file and line, and what to do."""


@dataclass(frozen=True)
class Defect:
    """A row that was read but breaks the protocol; reported, never fixed."""

    file: str
    line: int
    uid: str
    kind: str  # placeholder_text | demo_length | anchor_out_of_range | label_mismatch | progress_out_of_range | missing_labels
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclass
class Bench:
    """Samples read from one or more files, with the defects found on the way."""

    samples: list[Sample]
    defects: list[Defect] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def parse_percent(value: object) -> float | None:
    """A percent field as a fraction; None for an `n/a` marker.

    >>> parse_percent("20%"), parse_percent("1.41%"), parse_percent("+7%"), parse_percent("n/a")
    (0.2, 0.0141, 0.07, None)
    >>> parse_percent("nan%")
    Traceback (most recent call last):
    ValueError: not a finite number: 'nan%'
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip().strip("\"'")
        if text.lower() in NA_MARKERS:
            return None
        number = float(text.rstrip("%").strip())
    if not math.isfinite(number):  # NaN and infinities (also 1e400, "inf%") would poison every metric
        raise ValueError(f"not a finite number: {value!r}")
    return round(number / 100.0, 10)


def parse_index(value: object) -> int | None:
    """An int-or-string index field; None for an `n/a` marker."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip().strip("\"'")
    if text.lower() in NA_MARKERS:
        return None
    return int(text)


def format_percent(fraction: float, signed: bool = False) -> str:
    """A fraction as the release writes it: "20%", "1.41%", "+7%" (signed)."""
    number = round(fraction * 100.0, 2)
    text = f"{number:g}" if abs(number) < 1e15 else str(number)
    if signed and not text.startswith("-"):
        text = "+" + text
    return text + "%"


class _Row:
    """Field access for one record that turns any problem into a BenchFormatError with file:line."""

    def __init__(self, record: dict, path: Path, line: int):
        self.record, self.path, self.line = record, path, line

    def fail(self, message: str) -> BenchFormatError:
        return BenchFormatError(f"{self.path}:{self.line}: {message}")

    def require(self, key: str) -> object:
        if key not in self.record:
            raise self.fail(f"missing field {key!r} (fields present: {', '.join(self.record)})")
        return self.record[key]

    def convert(self, key: str, parse) -> object:
        value = self.record.get(key)
        try:
            return parse(value)
        except (TypeError, ValueError) as err:
            raise self.fail(f"field {key!r} has unreadable value {value!r} ({err})") from None


def record_to_sample(record: dict, uid: str, path: Path, line: int) -> tuple[Sample, list[Defect]]:
    """One release record as a Sample, plus the defects it has."""
    row = _Row(record, path, line)
    if not isinstance(record, dict):
        raise row.fail(f"expected a JSON object, got {type(record).__name__}")
    trajectory_id = str(row.require("id"))
    goal = row.require("task_goal")
    if not isinstance(goal, str):
        raise row.fail(f"field 'task_goal' must be a string, got {goal!r}")
    if ("visual_demo" in record) == ("text_demo" in record):
        raise row.fail("a record needs exactly one of 'visual_demo' and 'text_demo'")
    modality = Modality.VISUAL if "visual_demo" in record else Modality.TEXT
    demo_key = f"{modality.value}_demo"
    items = record[demo_key]
    if isinstance(items, list) and not items:
        raise row.fail(f"{demo_key!r} is empty: a demonstration needs {'keyframes' if demo_key == 'visual_demo' else 'steps'}")
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise row.fail(f"field {demo_key!r} must be a list of strings")
    total_steps = row.convert("total_steps", parse_index)
    if total_steps is None:
        total_steps = len(items) - 1 if modality is Modality.VISUAL else len(items)

    observation = row.require("stage_to_estimate")
    obs_is_list = isinstance(observation, list)
    if obs_is_list:
        if len(observation) != 1 or not isinstance(observation[0], str):
            raise row.fail(f"'stage_to_estimate' must be a file name or a one-element list, got {observation!r}")
        observation = observation[0]
    elif not isinstance(observation, str):
        raise row.fail(f"'stage_to_estimate' must be a file name, got {observation!r}")

    progress = row.convert("progress_score", parse_percent)
    closest_idx = row.convert("closest_idx", parse_index)
    delta = row.convert("delta", parse_percent)

    demo_camera = observation_camera = None
    combination = record.get("camera_combination")
    if isinstance(combination, str) and "+" in combination:
        demo_camera, observation_camera = (part.strip() for part in combination.split("+", 1))
    elif modality is Modality.VISUAL and items:
        demo_camera, observation_camera = camera_of(items[0]), camera_of(observation)
    else:
        observation_camera = camera_of(observation)
    cross = demo_camera is not None and observation_camera is not None and demo_camera != observation_camera
    view = View.CROSS if cross else View.SAME

    sample = Sample(
        uid=uid,
        trajectory_id=trajectory_id,
        goal=goal,
        demo=Demo(modality=modality, items=tuple(items), total_steps=total_steps),
        observation=observation,
        progress=progress,
        closest_idx=closest_idx,
        delta=delta,
        view=view,
        demo_camera=demo_camera,
        observation_camera=observation_camera,
        data_source=record.get("data_source"),
        labelled="progress_score" in record or "closest_idx" in record,
        extra={key: value for key, value in record.items() if key not in KNOWN_FIELDS},
        spelling={
            "keys": list(record),
            "total_steps": record.get("total_steps"),
            "stage_to_estimate_list": obs_is_list,
            "closest_idx": record.get("closest_idx"),
            "progress_score": record.get("progress_score"),
            "delta": record.get("delta"),
            "camera_combination": combination,
        },
    )
    return sample, find_defects(sample, str(path), line)


def find_defects(sample: Sample, file: str, line: int) -> list[Defect]:
    """What is wrong with a sample's content, without changing it."""
    defects = []

    def add(kind: str, message: str) -> None:
        defects.append(Defect(file, line, sample.uid, kind, message))

    demo = sample.demo
    if not sample.labelled:
        add("missing_labels", "no progress_score or closest_idx field: the row cannot be scored or trained on")
    if len(demo.items) != demo.expected_length:
        what = "T+1 keyframes" if demo.modality is Modality.VISUAL else "T steps"
        add("demo_length", f"{len(demo.items)} demo items but total_steps={demo.total_steps} asks for {what}")
    texts = [sample.goal] + (list(demo.items) if demo.modality is Modality.TEXT else [])
    for text in texts:
        if not text.strip() or PLACEHOLDER.search(text):
            add("placeholder_text", f"placeholder instead of real text: {text[:80]!r}")
            break
    if (sample.progress is None) != (sample.closest_idx is None):
        add("label_mismatch", f"progress {sample.progress!r} and closest_idx {sample.closest_idx!r} disagree on n/a")
    if sample.closest_idx is not None and not 1 <= sample.closest_idx <= len(demo.items):
        add("anchor_out_of_range", f"closest_idx {sample.closest_idx} outside 1..{len(demo.items)}")
    if sample.progress is not None and not 0.0 <= sample.progress <= 1.0:
        add("progress_out_of_range", f"progress {sample.progress * 100:g}% outside 0..100%")
    return defects


def read_official(path: str | Path) -> Bench:
    """Read one release JSONL file. Raises BenchFormatError (file:line) on unreadable rows."""
    path = Path(path)
    if not path.is_file():
        raise BenchFormatError(f"{path}: no such benchmark file")
    samples, defects = [], []
    try:
        handle = path.open("rb")
    except OSError as err:
        raise BenchFormatError(f"{path}: cannot read the benchmark file ({err.strerror or err})") from None
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                hint = " (UTF-16? save the file as UTF-8)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw else ""
                raise BenchFormatError(
                    f"{path}:{line_number}: not UTF-8 text at byte {err.start}{hint}; JSONL files are UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise BenchFormatError(f"{path}:{line_number}: not valid JSON ({err.msg} at column {err.colno})") from None
            except (ValueError, RecursionError) as err:  # an integer of over 4,300 digits, nesting too deep
                what = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]
                raise BenchFormatError(f"{path}:{line_number}: unreadable JSON ({what})") from None
            sample, found = record_to_sample(record, f"{path.stem}:{line_number}", path, line_number)
            samples.append(sample)
            defects.extend(found)
    return Bench(samples=samples, defects=defects, files=[path])


def load_bench(paths: Sequence[str | Path]) -> Bench:
    """Read several release files into one Bench; uids must be unique across them."""
    if not paths:
        raise BenchFormatError("no benchmark file given")
    merged = Bench(samples=[])
    seen: dict[str, Path] = {}
    if len({Path(path).resolve() for path in paths}) < len(paths):
        raise BenchFormatError(f"the same benchmark file is given twice: {', '.join(map(str, paths))}")
    for path in paths:
        bench = read_official(path)
        for sample in bench.samples:
            if sample.uid in seen:
                raise BenchFormatError(
                    f"{path}: uid {sample.uid} also comes from {seen[sample.uid]}; "
                    "two files share the stem, rename one of them"
                )
            seen[sample.uid] = Path(path)
        merged.samples.extend(bench.samples)
        merged.defects.extend(bench.defects)
        merged.files.extend(bench.files)
    return merged


def _spelled(original: object, value: object, parse, fresh) -> object:
    """The original spelling of a field when it still reads as `value`, else a fresh one."""
    if original is not None:
        try:
            if parse(original) == value:
                return original
        except (TypeError, ValueError):
            pass
    return fresh()


def sample_to_record(sample: Sample) -> dict:
    """A Sample as a release record, spelled as it was read when it was read from one."""
    spelling = sample.spelling
    demo = sample.demo
    na = "n/a"
    fields: dict[str, object] = {
        "id": sample.trajectory_id,
        "task_goal": sample.goal,
        f"{demo.modality.value}_demo": list(demo.items),
        "total_steps": _spelled(spelling.get("total_steps"), demo.total_steps, parse_index, lambda: demo.total_steps),
        "stage_to_estimate": (
            [sample.observation]
            if spelling.get("stage_to_estimate_list", demo.modality is Modality.VISUAL)
            else sample.observation
        ),
        "closest_idx": _spelled(
            spelling.get("closest_idx"),
            sample.closest_idx,
            parse_index,
            lambda: na if sample.closest_idx is None else sample.closest_idx,
        ),
        "progress_score": _spelled(
            spelling.get("progress_score"),
            sample.progress,
            parse_percent,
            lambda: na if sample.progress is None else format_percent(sample.progress),
        ),
    }
    if not sample.labelled:  # an unlabelled row stays unlabelled, not "n/a"
        del fields["closest_idx"], fields["progress_score"]
    if (demo.modality is Modality.VISUAL and sample.labelled) or "delta" in spelling.get("keys", ()):
        fields["delta"] = _spelled(
            spelling.get("delta"),
            sample.delta,
            parse_percent,
            lambda: na if sample.delta is None else format_percent(sample.delta, signed=True),
        )
    if sample.data_source is not None:
        fields["data_source"] = sample.data_source
    if spelling.get("camera_combination") is not None:
        fields["camera_combination"] = spelling["camera_combination"]
    elif sample.view is View.CROSS and sample.demo_camera and sample.observation_camera:
        fields["camera_combination"] = f"{sample.demo_camera}+{sample.observation_camera}"
    fields.update(sample.extra)
    order = [key for key in spelling.get("keys", ()) if key in fields]
    return {key: fields[key] for key in order + [key for key in fields if key not in order]}


def write_official(samples: Iterable[Sample], path: str | Path) -> Path:
    """Write samples as a release JSONL file (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(sample_to_record(sample), ensure_ascii=False) + "\n")
    return path
