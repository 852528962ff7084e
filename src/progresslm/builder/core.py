"""The one benchmark-building core that `sim build`, `data build` and any new simulator family drive.

A builder supplies *units* (one observation episode with its demonstrations: a picklable job, a key and a split) and
a function that turns a unit into rows of the authors' format per file stem, writing its images on the way. The core
does the rest, the same way for every builder:

- `open_build`: the output folder and its manifest; another build's settings in the same folder, or a manifest that
  cannot be read, are refused; a DONE marker counts only while the files it records are whole;
- `pending`: which units still need building: a unit counts as built only when its JSON parses and every image its
  rows name exists with the size recorded when it was written (a truncated file or a deleted image is rebuilt);
- `run_units`: the units over the local process pool or Ray (`builder.engines`), each saved as it finishes, so a
  kill loses only the units in flight;
- `rows_by_split` and `finish`: the split files, the dataset card with the shortcut baselines, and the DONE marker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from progresslm.bench.format import FILE_STEMS
from progresslm.builder.card import SPLITS, write_card, write_splits
from progresslm.builder.engines import run_jobs
from progresslm.io import write_text_atomic

log = logging.getLogger(__name__)

MANIFEST = "build.json"
DONE = "DONE"
SIZES_SUFFIX = ".files.json"  # beside each unit's JSON: image path -> bytes, written after the images


class BuildError(ValueError):
    """A build that cannot go on as asked; the message says what and where."""


def open_build(out: Path, identity: dict, error: type[Exception] = BuildError) -> bool:
    """Make `out`; refuse a folder that holds a build with other settings, or whose manifest cannot be read (what
    its units were built with is then unknown). True when the build there is done and its files are whole."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))["identity"]
            if not isinstance(previous, dict):
                raise TypeError("identity is not an object")
        except (OSError, ValueError, KeyError, TypeError) as err:  # ValueError: not JSON, not UTF-8
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
            raise error(f"{manifest} is not a readable build manifest ({reason}), so what {out} was built with is "
                        "unknown: delete the folder to build it again, or choose another --out") from None
        if previous != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise error(f"{out} holds a build with other settings ({', '.join(changed)}); "
                        "choose another --out or delete it")
    return (out / DONE).exists() and _finished_files_whole(out)


def _finished_files_whole(out: Path) -> bool:
    """Whether the split files and card a finished build recorded in its DONE marker are all there with the sizes it
    recorded. When not (a file cut short or deleted since), the marker goes and False: the build writes them again
    from its units. A marker without a record (an older build) is trusted as before."""
    try:
        lines = (out / DONE).read_text(encoding="utf-8", errors="replace").splitlines()
        sizes = json.loads(lines[1]) if len(lines) > 1 else {}
        broken = next((name for name, size in sizes.items() if not (out / name).is_file()
                       or (out / name).stat().st_size != size), None)
    except (OSError, ValueError, AttributeError, TypeError):
        broken = DONE
    if broken is None:
        return True
    log.warning("%s: %s is missing or not as the build wrote it; writing the split files and card again from the "
                "built units", out, broken)
    (out / DONE).unlink()
    return False


def write_manifest(out: Path, data: dict) -> None:
    write_text_atomic(out / MANIFEST, json.dumps(data))


def image_paths(rows: dict[str, list[dict]]) -> list[str]:
    """The image files a unit's rows name, relative to the images folder (`<row id>/<name>`)."""
    names: dict[str, None] = {}
    for records in rows.values():
        for record in records:
            for key in ("visual_demo", "stage_to_estimate"):
                value = record.get(key)
                for name in [value] if isinstance(value, str) else value or []:
                    names[f"{record['id']}/{name}"] = None
    return list(names)


def unit_rows(data: dict) -> dict[str, list[dict]]:
    """The rows of a saved unit: sim units keep them under "rows", data units are the rows."""
    return data["rows"] if isinstance(data.get("rows"), dict) else data


def is_built(path: Path, images: Path) -> bool:
    """Whether the unit saved at `path` is whole: its JSON parses, and every image its rows name exists (with the
    size recorded beside it, when a size record was written)."""
    try:
        data = json.loads(path.read_text())
        rows = unit_rows(data)
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False
    sizes_file = path.with_name(path.name + SIZES_SUFFIX)
    try:
        sizes = json.loads(sizes_file.read_text()) if sizes_file.exists() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    for name in image_paths(rows):
        file = images / name
        if not file.is_file() or (name in sizes and file.stat().st_size != sizes[name]):
            return False
    return True


def pending(paths: Sequence[Path], images: Path) -> list[int]:
    """Indices of the units that still need building (missing, unreadable or with images missing or changed)."""
    todo = [i for i, path in enumerate(paths) if not is_built(path, images)]
    if len(todo) < len(paths):
        log.info("resuming: %d of %d units already built", len(paths) - len(todo), len(paths))
    return todo


def save_unit(path: Path, data: dict, images: Path) -> None:
    """A finished unit: its images' sizes first, then its JSON (whose presence marks it built)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in image_paths(unit_rows(data)):
        file = images / name
        if file.is_file():
            sizes[name] = file.stat().st_size
    write_text_atomic(path.with_name(path.name + SIZES_SUFFIX), json.dumps(sizes))
    write_text_atomic(path, json.dumps(data))


def run_units(function: Callable[[Any], dict], jobs: Sequence[Any], names: Sequence[str], paths: Sequence[Path],
              images: Path, *, engine: str, workers: int, address: str | None, desc: str, total: int,
              progress: bool, cleanup: Callable[[], None] | None = None) -> None:
    """Build `jobs` with `function` over the engine, each result saved to its path as it finishes."""
    bar = tqdm(total=total, initial=total - len(jobs), desc=desc, unit="episode", disable=not progress)
    try:
        with closing(run_jobs(function, jobs, names, engine=engine, workers=workers, address=address)) as finished:
            for index, data in finished:
                save_unit(paths[index], data, images)  # saved at once: a kill loses only the units in flight
                bar.update()
    finally:
        if cleanup is not None:
            cleanup()
        bar.close()


def rows_by_split(paths: Sequence[Path], splits: Sequence[str]) -> tuple[dict[str, dict[str, list[dict]]], list[dict]]:
    """Every saved unit's rows gathered per split and file stem, in unit order; and the units' saved data."""
    rows: dict[str, dict[str, list[dict]]] = {s: {stem: [] for stem in FILE_STEMS} for s in SPLITS}
    saved = []
    for path, split in zip(paths, splits):
        data = json.loads(path.read_text())
        saved.append(data)
        for stem, records in unit_rows(data).items():
            rows[split][stem].extend(records)
    return rows, saved


def finish(outcome, rows: dict[str, dict[str, list[dict]]], task_splits: dict[str, list[str]], settings: dict,
           title: str, version: str):
    """Write the split files into `outcome` (files, samples), then the dataset card and the DONE marker."""
    outcome.files, outcome.samples = write_splits(outcome.out, rows)
    write_card(outcome, task_splits, settings, title)
    files = [path for paths in outcome.files.values() for path in paths] + [outcome.out / "card.json"]
    sizes = {str(path.relative_to(outcome.out)): path.stat().st_size for path in files if path.is_file()}
    write_text_atomic(outcome.out / DONE, f"{version}\n{json.dumps(sizes)}\n")  # the sizes: checked on reuse
    return outcome
