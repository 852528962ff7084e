"""The Hugging Face `datasets` round trip of a benchmark in the authors' format (docs/hf.md).

Export: a benchmark folder (JSONL files in the authors' format, split folders `bench/`, `sft/`, `rl/` or JSONL files
at the top, images under IMAGE_ROOT/<id>/<file name>) becomes one `datasets.DatasetDict`: one split per split
folder, one table per split with a `kind` column (the file stem: `visual_same_view`, `text-normal`, ...), the
authors' fields kept (file names as written, labels as the release spells them), the images embedded (their
bytes, so the files come back byte for byte) and the other per-row fields (`sim`, `episode`) as one JSON string,
so that every row has the same schema. It is written twice: `save_to_disk` under OUT/arrow/ and parquet shards
under OUT/data/, with a README.md dataset card whose YAML header points the Hub at the shards.

The way back (`materialize`): an exported folder or a Hub dataset id becomes JSONL files and images again, in a
cache folder, so that `progresslm eval` runs unchanged. `data/release.py` downloads the authors' release.

`datasets` and `huggingface_hub` are imported only inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

import yaml

from progresslm.bench.format import FILE_STEMS, KNOWN_FIELDS, read_official, sample_to_record
from progresslm.io import OutsideRootError, confined, data_home, write_text_atomic
from progresslm.types import Modality

log = logging.getLogger(__name__)

MAX_SHARD_BYTES = 500 * 2**20  # parquet shards of at most ~500 MB, as the Hub advises
SPLIT_NAME = re.compile(r"\w+(\.\w+)*")  # what `datasets` accepts as a split name
KIND_NAME = re.compile(r"[\w][\w.-]*")  # a kind becomes a file name on the way back
COLUMNS = ("kind", "id", "task_goal", "visual_demo", "text_demo", "total_steps", "stage_to_estimate", "closest_idx",
           "delta", "progress_score", "data_source", "camera_combination", "extra", "demo_images",
           "observation_image")  # fmt: skip
MARKER = "materialized.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # owner/name


class HFDataError(ValueError):
    """A benchmark, exported folder, Hub dataset or release that cannot be read or written: says what and where."""


def features():
    """The one schema of every split: the authors' fields (null where a row has none), `kind`, `extra` (JSON of
    the other fields) and the images (`demo_images` beside `visual_demo`, `observation_image` beside
    `stage_to_estimate`)."""
    from datasets import Features, Image, List, Value  # lazy: datasets (the [data] and [train] extras)

    text = Value("string")
    return Features({
        "kind": text, "id": text, "task_goal": text,
        "visual_demo": List(text), "text_demo": List(text), "total_steps": Value("int64"),
        "stage_to_estimate": text, "closest_idx": Value("int64"), "delta": text, "progress_score": text,
        "data_source": text, "camera_combination": text, "extra": text,
        "demo_images": List(Image()), "observation_image": Image(),
    })  # fmt: skip


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    import datasets  # lazy: datasets (the [data] and [train] extras)

    was = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()


# ----------------------------------------------------------------------------------------------------- export


@dataclass
class Export:
    """What `export_hf` wrote: rows per split and kind, the parquet shards."""

    out: Path
    rows: dict[str, dict[str, int]]  # split -> kind -> rows
    shards: list[Path] = field(default_factory=list)
    missing_images: int = 0


def find_splits(folder: Path, split: str = "bench") -> dict[str, list[Path]]:
    """Split name -> JSONL files: `folder/*.jsonl` are split `split`, `folder/<name>/*.jsonl` split `<name>`. Files
    in the authors' order (FILE_STEMS) first, then the others by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HFDataError(f"{folder}: not a folder; give a benchmark folder (JSONL files, or bench/ sft/ rl/ folders "
                          "of JSONL files, and images/)")
    order = {stem: i for i, stem in enumerate(FILE_STEMS)}

    def files(where: Path) -> list[Path]:
        return sorted(where.glob("*.jsonl"), key=lambda p: (order.get(p.stem, len(order)), p.name))

    splits: dict[str, list[Path]] = {}
    if files(folder):
        splits[split] = files(folder)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if files(sub):
            if sub.name in splits:
                raise HFDataError(f"{folder}: JSONL files at the top and in {sub}/ would both be split {sub.name!r}; "
                                  "give another --split for the top ones")
            splits[sub.name] = files(sub)
    if not splits:
        raise HFDataError(f"{folder}: no JSONL files in it, nor in a split folder under it (bench/, sft/, rl/)")
    for name in splits:
        if not SPLIT_NAME.fullmatch(name):
            raise HFDataError(f"{folder}: {name!r} cannot name a split (letters, digits and _ only); rename the "
                              "folder, or give --split")
    return splits


def _stored_name(name: str) -> str:
    """An image name as the export stores it: as written, except that a name that would resolve outside
    IMAGE_ROOT/<id>/ (absolute, '..') keeps only its file name, since the image travels inside the dataset.

    >>> _stored_name("demo/corner_0000.jpg"), _stored_name("/data/x/camera_top_0015.jpg"), _stored_name("../a.jpg")
    ('demo/corner_0000.jpg', 'camera_top_0015.jpg', 'a.jpg')
    """
    path = PurePosixPath(name.replace("\\", "/"))
    return path.name if path.is_absolute() or ".." in path.parts else name


def _text(value: object) -> str | None:
    """A percent field as a string: the release's spelling kept; a bare number (read as a percentage) gets its %."""
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}%" if isinstance(value, (int, float)) else json.dumps(value)


def image_file(sample, name: str, image_root: str | Path, where: str) -> Path:
    """Where an image of `sample` lives (IMAGE_ROOT/<id>/<name>), resolved, when it lies under `image_root`; an
    absolute name, '..' that climbs out or a symlink out of the root is an HFDataError naming the row and the name,
    so that no file from elsewhere on the machine is packed into the dataset (or uploaded with --push)."""
    try:
        return confined(Path(sample.trajectory_id) / name, image_root, f"{where}: image")
    except OutsideRootError as err:
        raise HFDataError(f"{err}; images must lie under --image-root (IMAGE_ROOT/<id>/<file name>), so the row "
                          "was not exported") from None


def _image(path: Path, stored: str, where: str, allow_missing: bool) -> dict | None:
    """An image as the dataset stores it (its bytes and its name), or None when it is missing and that is allowed."""
    try:
        data = path.read_bytes()
    except OSError as err:
        if not allow_missing:
            raise HFDataError(f"{where}: image {path} cannot be read ({err.strerror or err}); images resolve as "
                              "IMAGE_ROOT/<id>/<file name> (give --image-root), or pass --allow-missing-images to "
                              "export the row without it") from None
        log.warning("%s: image %s missing; exported as null", where, path)
        return None
    return {"bytes": data, "path": stored}


def _rows(files: tuple[str, ...], image_root: str, allow_missing: bool) -> Iterator[dict]:
    """The rows of one split (a generator for `Dataset.from_generator`; `files` a tuple, since `datasets` would
    shard a list)."""
    for file in map(Path, files):
        for sample in read_official(file).samples:  # BenchFormatError says file:line
            where = f"{file}:{sample.uid.rsplit(':', 1)[-1]}"
            record = sample_to_record(sample)

            images = {name: _image(image_file(sample, name, image_root, where), _stored_name(name), where,
                                 allow_missing)
                      for name in sample.image_names()}  # fmt: skip
            visual = sample.modality is Modality.VISUAL
            data_source = record.get("data_source")
            yield {
                "kind": file.stem,
                "id": sample.trajectory_id,
                "task_goal": sample.goal,
                "visual_demo": [_stored_name(n) for n in sample.demo.items] if visual else None,
                "text_demo": None if visual else list(sample.demo.items),
                "total_steps": sample.demo.total_steps,
                "stage_to_estimate": _stored_name(sample.observation),
                "closest_idx": sample.closest_idx,
                "delta": _text(record.get("delta")),
                "progress_score": _text(record.get("progress_score")),
                "data_source": data_source if data_source is None or isinstance(data_source, str)
                else json.dumps(data_source),
                "camera_combination": _text(record.get("camera_combination")),
                "extra": json.dumps({k: v for k, v in record.items() if k not in KNOWN_FIELDS}, ensure_ascii=False),
                "demo_images": [images[n] for n in sample.demo.items] if visual else None,
                "observation_image": images[sample.observation],
            }  # fmt: skip


def staging_dir(target: Path) -> Path:
    """An empty hidden folder beside `target`, renamed over it when complete (`_commit`): a crash leaves no
    half-written folder under the target's name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))


def _commit(staging: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def export_hf(folder: str | Path, out: str | Path, image_root: str | Path | None = None, split: str = "bench",
              allow_missing: bool = False, license: str = "other", overwrite: bool = False,
              progress: bool = True) -> Export:  # fmt: skip
    """Write the benchmark in `folder` as a DatasetDict: OUT/arrow/ (save_to_disk), OUT/data/<split>-*.parquet and
    OUT/README.md (the dataset card). The folder appears complete or not at all."""
    import datasets  # lazy: datasets (the [data] and [train] extras)

    folder, out = Path(folder), Path(out)
    root = Path(image_root) if image_root else folder / "images"
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise HFDataError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    splits = find_splits(folder, split)
    staging = staging_dir(out)
    try:
        result = Export(out=out, rows={})
        parts = {}
        with _progress_bars(progress):
            for name, files in splits.items():
                parts[name] = _generate(
                    _rows, features=features(), cache_dir=str(staging / "cache"), split=datasets.NamedSplit(name),
                    gen_kwargs={"files": tuple(str(f) for f in files), "image_root": str(root),
                                "allow_missing": allow_missing},
                )  # fmt: skip
                result.rows[name] = dict(Counter(parts[name].data.column("kind").to_pylist()))
                result.missing_images += _null_images(parts[name])
            dataset = datasets.DatasetDict(parts)
            dataset.save_to_disk(str(staging / "arrow"))
            for name, part in parts.items():
                result.shards += _write_parquet(part, staging / "data", name)
        (staging / "README.md").write_text(dataset_card(result, folder, license), encoding="utf-8")
        for extra in ("card.json", "card.md", "contact_sheet.png"):  # a built benchmark's own card travels along
            if (folder / extra).is_file():
                shutil.copy2(folder / extra, staging / extra)
        del parts, dataset
        shutil.rmtree(staging / "cache", ignore_errors=True)
        _commit(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.shards = [out / p.relative_to(staging) for p in result.shards]
    return result


def _generate(*args, **kwargs):
    """`Dataset.from_generator`, raising the generator's own error (file:line) instead of the wrapper's."""
    import datasets  # lazy: datasets (the [data] and [train] extras)
    from datasets.exceptions import DatasetGenerationError

    try:
        return datasets.Dataset.from_generator(*args, **kwargs)
    except DatasetGenerationError as err:
        cause = err.__cause__
        while isinstance(cause, DatasetGenerationError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ValueError):  # HFDataError, BenchFormatError
            raise cause from None
        raise


def _null_images(part) -> int:
    import pyarrow.compute as pc  # lazy: pyarrow (the [data] extra)

    demo = pc.list_flatten(part.data.column("demo_images"))
    return part.data.column("observation_image").null_count + demo.null_count


def _write_parquet(part, data_dir: Path, split: str) -> list[Path]:
    """data/<split>-00000-of-0000N.parquet, the names `push_to_hub` gives, so the card's globs match both."""
    data_dir.mkdir(parents=True, exist_ok=True)
    count = max(1, math.ceil(part.data.nbytes / MAX_SHARD_BYTES))
    paths = []
    for index in range(count):
        path = data_dir / f"{split}-{index:05d}-of-{count:05d}.parquet"
        part.shard(num_shards=count, index=index, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def dataset_card(result: Export, source: Path, license: str) -> str:
    """README.md: the Hub's YAML header (license, tags, one `default` config whose splits point at the parquet
    shards) and a short description with the rows per split and kind."""
    header = {
        "license": license,
        "task_categories": ["robotics", "visual-question-answering"],
        "tags": ["progress-estimation", "progresslm", "vision-language"],
        "pretty_name": f"{source.resolve().name} (progress reasoning)",
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in result.rows]}],
    }  # fmt: skip
    kinds = sorted({k for counts in result.rows.values() for k in counts}, key=lambda k: (FILE_STEMS + (k,)).index(k))
    table = ["| kind | " + " | ".join(result.rows) + " |", "|---|" + "---:|" * len(result.rows)]
    table += [f"| `{k}` | " + " | ".join(str(result.rows[s].get(k, 0)) for s in result.rows) + " |" for k in kinds]
    split = "bench" if "bench" in result.rows else next(iter(result.rows))
    made = (source / "card.md").read_text(encoding="utf-8") if (source / "card.md").is_file() else ""
    body = f"""
# {header["pretty_name"]}

Progress-reasoning samples (ProgressLM, arXiv 2601.15224): a task goal, a demonstration (keyframe images or step
texts) and one observation image; the label is how far the observation has got through the task (a percentage,
or `n/a` when the demonstration does not describe what the observation shows). Exported by `progresslm bench
export` from `{source.name}`.

{chr(10).join(table)}

## Columns

One table per split; `kind` is the file the row came from in the authors' JSONL format. The authors' fields keep
their names and spelling (`progress_score` "20%" or "n/a", `delta` "+7%"); a field a row does not have is null.

- `visual_demo` / `text_demo`: keyframe file names (visual rows) or step texts (text rows); `demo_images` holds
  the keyframe images in the same order.
- `stage_to_estimate`: the observation's file name; `observation_image` the image.
- `total_steps` (T), `closest_idx` (from 1; null for `n/a`), `data_source`, `camera_combination` (cross-view).
- `extra`: a JSON object of the row's other fields (how it was made: `sim`, `episode`).

## Use

```python
from datasets import load_dataset
rows = load_dataset("OWNER/NAME", split="{split}")
text = rows.filter(lambda r: r["kind"] == "text-normal")
```

```bash
progresslm eval --bench OWNER/NAME --backend nano      # writes the JSONL files and images back, then evaluates
```
"""
    if made:
        body += "\n## How the data was made\n\n" + made.replace("\n# ", "\n### ")
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n" + body


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the Hub cannot be reached or refuses (offline, no login, no such repo)."""
    errors: list[type[BaseException]] = [OSError, ValueError]  # ConnectionError, OfflineModeIsEnabled, not found
    try:
        from huggingface_hub.errors import HfHubHTTPError  # lazy: huggingface_hub (the [data] extra)

        errors.append(HfHubHTTPError)
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def hub_reason(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def push_to_hub(out: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported folder: `DatasetDict.push_to_hub` (the parquet shards), then the folder's dataset card."""
    import datasets  # lazy: datasets (the [data] and [train] extras)

    out = Path(out)
    try:
        dataset = datasets.load_from_disk(str(out / "arrow"))
        dataset.push_to_hub(repo_id, private=private)
        from huggingface_hub import HfApi

        HfApi().upload_file(path_or_fileobj=str(out / "README.md"), path_in_repo="README.md", repo_id=repo_id,
                            repo_type="dataset", commit_message="dataset card (progresslm bench export)")
    except hub_errors() as err:
        raise HFDataError(
            f"could not push {out} to the Hub dataset {repo_id} ({hub_reason(err)}). Pushing needs network access to "
            f"huggingface.co and a login with write access (hf auth login, or HF_TOKEN), and HF_HUB_OFFLINE unset. "
            f"The folder is complete: elsewhere, upload it as is with: hf upload {repo_id} {out} --repo-type dataset "
            "--exclude 'arrow/*'"
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"


# -------------------------------------------------------------------------------------------------- the way back


@dataclass
class Materialized:
    """An exported dataset written back as the authors' JSONL files and images."""

    files: list[Path]
    image_root: Path
    folder: Path
    split: str
    rows: int
    reused: bool = False


def hf_location(text: str) -> str | None:
    """"folder" for a folder written by `export_hf` (or downloaded from the Hub: README.md + data/*.parquet),
    "hub" for a Hub dataset id (owner/name that is no path here), else None (JSONL files, other folders)."""
    path = Path(text)
    if path.is_dir():
        exported = (path / "arrow" / "dataset_dict.json").is_file() or (path / "dataset_dict.json").is_file()
        uploaded = (path / "README.md").is_file() and any((path / "data").glob("*.parquet"))
        return "folder" if exported or uploaded else None
    if not path.exists() and HUB_ID.fullmatch(text) and path.suffix not in (".jsonl", ".json"):
        return "hub"
    return None


def _pick_split(names: list[str], split: str | None, where: str) -> str:
    if split is not None:
        if split not in names:
            raise HFDataError(f"{where} has no split {split!r}; its splits: {', '.join(names)}")
        return split
    if "bench" in names or len(names) == 1:
        return "bench" if "bench" in names else names[0]
    raise HFDataError(f"{where} holds splits {', '.join(names)}: choose one with --bench-split")


def _batches(dataset) -> Iterator[dict]:
    """Rows with images as stored ({"bytes", "path"}), not decoded."""
    try:
        for table in dataset.with_format("arrow").iter(batch_size=64):
            yield from table.to_pylist()
    except (ValueError, OSError) as err:
        files = ", ".join(Path(f["filename"]).name for f in getattr(dataset, "cache_files", [])) or "its arrow files"
        raise HFDataError(f"{files}: a damaged arrow file ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    """An error's message on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def _parquet(path: Path):
    """A parquet file opened (its footer read), or an HFDataError naming it."""
    import pyarrow.parquet as pq  # lazy: pyarrow (the [data] extra)

    try:
        return pq.ParquetFile(path)
    except (ValueError, OSError) as err:
        raise HFDataError(f"{path}: not a readable parquet file ({_reason(err)})") from None


def check_saved(arrow: Path) -> None:
    """A folder written by `DatasetDict.save_to_disk` read file by file before `datasets` loads it: its
    dataset_dict.json, each split's state.json and dataset_info.json must parse, and each arrow file must read to
    its end (an IPC stream); the first that does not is an HFDataError naming it, where `load_from_disk` would raise
    a JSONDecodeError or an ArrowInvalid that names no file."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)

    def parsed(path: Path) -> object:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HFDataError(f"{path}: missing (the saved dataset is incomplete)") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise HFDataError(f"{path}: not valid JSON ({_reason(err)})") from None

    splits = parsed(arrow / "dataset_dict.json")
    names = splits.get("splits") if isinstance(splits, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise HFDataError(f"{arrow / 'dataset_dict.json'}: expected {{\"splits\": [names]}}")
    for name in names:
        folder = safe_relative(name, "split", str(arrow / "dataset_dict.json"))
        state = parsed(arrow / folder / "state.json")
        files = state.get("_data_files") if isinstance(state, dict) else None
        if not isinstance(files, list):
            raise HFDataError(f"{arrow / folder / 'state.json'}: no _data_files list")
        parsed(arrow / folder / "dataset_info.json")
        for entry in files:
            shard = arrow / folder / safe_relative(entry.get("filename") if isinstance(entry, dict) else None,
                                                   "arrow file", str(arrow / folder / "state.json"))  # fmt: skip
            try:
                with pa.memory_map(str(shard)) as source:
                    reader = pa.ipc.open_stream(source)
                    while True:
                        try:
                            reader.read_next_batch()
                        except StopIteration:
                            break
            except (ValueError, OSError) as err:
                raise HFDataError(f"{shard}: a damaged arrow file ({_reason(err)})") from None


def _open(location: str, split: str | None) -> tuple[Iterator[dict], list[str], str, str]:
    """(rows, column names, split, fingerprint) of one split of an exported folder or a Hub dataset."""
    import datasets  # lazy: datasets (the [data] and [train] extras)

    path = Path(location)
    if hf_location(location) == "folder":
        arrow = path / "arrow" if (path / "arrow" / "dataset_dict.json").is_file() else path
        if (arrow / "dataset_dict.json").is_file():
            check_saved(arrow)
            try:
                parts = datasets.load_from_disk(str(arrow))
            except (ValueError, OSError, KeyError, TypeError) as err:  # a damage check_saved did not see
                raise HFDataError(f"{arrow}: cannot be loaded as a saved dataset ({_reason(err)})") from None
            name = _pick_split(list(parts), split, location)
            # the fingerprint `datasets` keeps for the saved split: it changes when the data does
            return _batches(parts[name]), parts[name].column_names, name, parts[name]._fingerprint

        shards: dict[str, list[Path]] = {}
        for shard in sorted((path / "data").glob("*.parquet")):
            shards.setdefault(shard.name.split("-", 1)[0], []).append(shard)
        name = _pick_split(list(shards), split, location)
        stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shards[name]]
        columns = [_parquet(shard).schema_arrow.names for shard in shards[name]][0]  # every footer read first

        def rows() -> Iterator[dict]:
            for shard in shards[name]:
                try:
                    for batch in _parquet(shard).iter_batches(batch_size=64):
                        yield from batch.to_pylist()
                except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
                    raise HFDataError(f"{shard}: a damaged parquet file ({_reason(err)})") from None

        fingerprint = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
        return rows(), columns, name, fingerprint
    try:
        name = _pick_split(datasets.get_dataset_split_names(location), split, f"Hub dataset {location}")
        part = datasets.load_dataset(location, split=name)
    except HFDataError:
        raise
    except hub_errors() as err:
        raise HFDataError(
            f"{location!r} is no file or folder here, and loading it as a Hub dataset failed ({hub_reason(err)}). "
            "--bench takes JSONL files, a folder written by `progresslm bench export`, or a Hub dataset id "
            "(owner/name). Without network access (or "
            "with HF_HUB_OFFLINE=1) only a dataset already in the local cache loads: download it where the Hub is "
            f"reachable (hf download {location} --repo-type dataset --local-dir DIR), copy DIR here and pass "
            "--bench DIR"
        ) from None
    return _batches(part), part.column_names, name, part._fingerprint


def safe_relative(text: object, what: str, where: str) -> PurePosixPath:
    """A name from the dataset as a path that stays inside the folder it is joined to (the data may come from
    anyone's Hub repository)."""
    if not isinstance(text, str) or not text or "\x00" in text or "\\" in text:
        raise HFDataError(f"{where}: {what} {text!r} is not a usable relative path")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or re.match(r"[A-Za-z]:", text):
        raise HFDataError(f"{where}: {what} {text!r} would be written outside the image folder; refused")
    return path


def _record(row: dict, where: str) -> dict:
    """A row as the authors' record (the inverse of `_rows`)."""
    visual = row.get("visual_demo") is not None
    record: dict = {"id": row["id"], "task_goal": row["task_goal"]}
    record["visual_demo" if visual else "text_demo"] = row["visual_demo"] if visual else row["text_demo"]
    if row.get("total_steps") is not None:
        record["total_steps"] = row["total_steps"]
    record["stage_to_estimate"] = [row["stage_to_estimate"]] if visual else row["stage_to_estimate"]
    labelled = row.get("progress_score") is not None or row.get("closest_idx") is not None
    if labelled:
        record["closest_idx"] = "n/a" if row.get("closest_idx") is None else row["closest_idx"]
    if row.get("delta") is not None:
        record["delta"] = row["delta"]
    if labelled:
        record["progress_score"] = "n/a" if row.get("progress_score") is None else row["progress_score"]
    for key in ("data_source", "camera_combination"):
        if row.get(key) is not None:
            record[key] = row[key]
    try:
        extra = json.loads(row.get("extra") or "{}")
    except json.JSONDecodeError as err:
        raise HFDataError(f"{where}: column 'extra' is not JSON ({err.msg})") from None
    if not isinstance(extra, dict) or set(extra) & set(KNOWN_FIELDS):
        raise HFDataError(f"{where}: column 'extra' must be a JSON object without the authors' fields")
    return {**record, **extra}


def _write_row(row: dict, where: str, images: Path, written: dict[Path, str]) -> None:
    """The row's images under images/<id>/<name>; a file two rows name must hold the same bytes."""
    folder = images / safe_relative(row.get("id"), "id", where)
    visual = row.get("visual_demo") is not None
    names = list(row["visual_demo"]) if visual else []
    pictures = list(row.get("demo_images") or []) if visual else []
    if len(pictures) != len(names):
        raise HFDataError(f"{where}: {len(names)} keyframe names but {len(pictures)} keyframe images")
    for name, picture in zip([*names, row.get("stage_to_estimate")], [*pictures, row.get("observation_image")]):
        path = folder / safe_relative(name, "image name", where)
        if picture is None:  # exported with --allow-missing-images: eval --skip-missing leaves the row out
            continue
        data = picture.get("bytes")
        if data is None:
            raise HFDataError(f"{where}: image {name!r} has no bytes (a dataset that stores only paths cannot be "
                              "written back)")
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if path in written:
            if written[path] != digest:
                raise HFDataError(f"{where}: image {path} differs from the one an earlier row wrote under that name")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[path] = digest


def _cache_name(location: str, split: str) -> str:
    if hf_location(location) == "hub":
        base = location.replace("/", "--")
    else:
        path = Path(location).resolve()
        base = f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    return re.sub(r"[^\w.-]+", "-", f"{base}-{split}")


def materialize(location: str, out_dir: str | Path | None = None, split: str | None = None,
                progress: bool = True) -> Materialized:  # fmt: skip
    """An exported folder or a Hub dataset id written back as the authors' JSONL files (one per `kind`) and images
    (IMAGE_ROOT/<id>/<name>), in `out_dir` (default: DATA_DIR/hf/<name>-<split>). A folder written before from
    the same data is reused; a new one appears complete or not at all."""
    kind = hf_location(location)
    if kind is None:
        raise HFDataError(f"{location}: neither a folder written by `progresslm bench export` (arrow/dataset_dict"
                          ".json, or README.md and data/*.parquet) nor a Hub dataset id (owner/name)")
    with _progress_bars(progress):
        rows, columns, split, fingerprint = _open(location, split)
    lacking = [c for c in COLUMNS if c not in columns]
    if lacking:
        raise HFDataError(f"{location} (split {split}) is not a progresslm export: columns {', '.join(lacking)} are "
                          f"missing (it has: {', '.join(columns)})")
    if out_dir is None:
        out_dir = data_home() / "hf" / _cache_name(location, split)
    out_dir = Path(out_dir)
    marker = out_dir / MARKER
    source = {"location": location, "split": split, "fingerprint": fingerprint}
    if marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            done = {}  # a marker cut short: made again below
        if isinstance(done, dict) and {k: done.get(k) for k in source} == source:
            files = [out_dir / name for name in done["files"]]
            return Materialized(files, out_dir / "images", out_dir, split, done["rows"], reused=True)
    staging = staging_dir(out_dir)
    try:
        handles: dict[str, TextIO] = {}
        written: dict[Path, str] = {}
        count = 0
        try:
            for count, row in enumerate(rows, start=1):
                where = f"{location} (split {split}, row {count})"
                kind_name = row.get("kind")
                if not isinstance(kind_name, str) or not KIND_NAME.fullmatch(kind_name):
                    raise HFDataError(f"{where}: kind {kind_name!r} cannot name a file")
                record = _record(row, where)
                _write_row(row, where, staging / "images", written)
                if kind_name not in handles:
                    handles[kind_name] = (staging / f"{kind_name}.jsonl").open("w", encoding="utf-8")
                handles[kind_name].write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        finally:
            for handle in handles.values():
                handle.close()
        if not count:
            raise HFDataError(f"{location}: split {split} holds no rows")
        (staging / "images").mkdir(exist_ok=True)
        names = [f"{k}.jsonl" for k in handles]
        write_text_atomic(staging / MARKER, json.dumps({**source, "files": names, "rows": count}, indent=2,
                                                       allow_nan=False) + "\n")
        _commit(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Materialized([out_dir / n for n in names], out_dir / "images", out_dir, split, count)
