"""Episodes from LeRobot datasets (codebase versions v3.0, v2.1 and v2.0), from a local folder or the Hugging Face Hub.

The layout follows LeRobot's own code (huggingface/lerobot): `src/lerobot/datasets/utils.py` (path templates
DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH, LEGACY_*; DEFAULT_FEATURES), `lerobot_dataset.py` (LeRobotDatasetMetadata's
get_data_file_path / get_video_file_path; `_query_videos`, which shifts a frame's time by the episode's
`videos/<camera>/from_timestamp`), `v30/convert_dataset_v21_to_v30.py` (the episode columns `data/chunk_index`,
`data/file_index`, `dataset_from_index`, `videos/<camera>/{chunk_index,file_index,from_timestamp,to_timestamp}`) and
`docs/source/lerobot-dataset-v3.mdx`:

- `meta/info.json`: codebase_version, fps, features (cameras have dtype "video" or "image"), data_path, video_path,
  chunks_size.
- v3.0: `meta/episodes/chunk-*/file-*.parquet` (a row per episode: episode_index, tasks, length, where its rows and
  video windows are), `meta/tasks.parquet` (task text as the index, task_index), frames in
  `data/chunk-XXX/file-XXX.parquet` and `videos/<camera>/chunk-XXX/file-XXX.mp4`, many episodes per file: an
  episode's frame i is at from_timestamp + i / fps in its camera's file.
- v2.x: `meta/episodes.jsonl`, `meta/tasks.jsonl`, one `data/chunk-XXX/episode_XXXXXX.parquet` and one
  `videos/chunk-XXX/<camera>/episode_XXXXXX.mp4` per episode, starting at t = 0.

Integer, boolean and string per-frame columns other than LeRobot's standard ones (annotations such as a subtask
index), plus `timestamp`, become `Episode.columns`. Per-episode key steps in the columns LeRobot's SARM reward model
reads from the episode metadata (`subtask_end_times`, else `subtask_end_frames`, with `subtask_names`; what
`data.lerobot_export` writes) become `Episode.keysteps`."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from progresslm.data.episodes import (
    Episode,
    EpisodeSourceError,
    KeyStep,
    check_fps,
    kind_is_hub_id,
    parse_keysteps,
)
from progresslm.data.video import VideoError, decode
from progresslm.io import OutsideRootError, confined

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
STANDARD_COLUMNS = ("index", "episode_index", "frame_index", "timestamp", "task_index")  # LeRobot's DEFAULT_FEATURES
DEFAULT_CHUNKS_SIZE = 1000  # LeRobot's DEFAULT_CHUNK_SIZE, for v2.x info.json files that omit chunks_size


@dataclass(frozen=True)
class _Window:
    """Where one camera's frames of one episode are: a video file and the time of the episode's first frame."""

    path: str  # relative to the dataset root
    start: float = 0.0
    end: float | None = None


@dataclass
class _Record:
    """One episode as the metadata describes it."""

    index: int
    length: int
    tasks: list[str]
    data_path: str  # relative to the dataset root
    videos: dict[str, _Window] = field(default_factory=dict)
    keysteps: list[KeyStep] | None = None


@dataclass
class _Layout:
    root: Path
    where: str  # how messages name the dataset
    version: str
    fps: float
    video_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    records: list[_Record]

    def files(self, indices: Iterable[int] | None, videos: bool = True) -> list[str]:
        """Relative paths of the data (and video) files of these episodes (None: all)."""
        wanted = None if indices is None else set(indices)
        paths: dict[str, None] = {}
        for record in self.records:
            if wanted is None or record.index in wanted:
                paths[record.data_path] = None
                if videos:
                    paths.update(dict.fromkeys(w.path for w in record.videos.values()))
        return list(paths)


def open_lerobot(location: str, revision: str | None = None, cache_dir: str | None = None, **ignored) -> list[Episode]:
    """Every episode of a LeRobot dataset: a local folder, or a Hub dataset id (`owner/name`) when no such path
    exists. From the Hub (`revision`: a branch, tag or commit; `cache_dir`: another Hugging Face cache), metadata and
    frame tables are downloaded now and each video file when a frame of it is first read."""
    path = Path(location).expanduser()
    hub = None
    if path.exists():
        if _cache_folder(path) is not None:  # a Hub cache snapshot given as a folder: its links must stay inside
            _check_links(path, _tree(path), str(path))
        layout = _read_layout(path, str(path))
        missing = [p for p in layout.files(None) if not (path / p).is_file()]
        if missing:
            raise EpisodeSourceError(f"{path}: {missing[0]} is missing ({len(missing)} data or video files are)")
    elif kind_is_hub_id(location):
        hub = _Hub(location, revision, cache_dir)
        layout = _fetch(hub, None, videos=False)
    else:
        raise EpisodeSourceError(f"{location} does not exist (and is not a Hub dataset id like owner/name)")
    columns, first_tasks = _frame_columns(layout)
    task_names = None
    episodes = []
    for record in layout.records:
        if record.tasks:
            task = record.tasks[0]
        else:  # no tasks in the episode metadata: the task of the episode's first frame
            task_names = task_names if task_names is not None else _task_names(layout)
            task = task_names.get(first_tasks.get(record.index, -1))
            if task is None:
                raise EpisodeSourceError(f"{layout.where}: episode {record.index} has no task text (no tasks in its "
                                         "metadata, and its task_index is not in the tasks file)")
        cameras = tuple(sorted([*record.videos, *layout.image_keys]))
        episodes.append(Episode(
            source="lerobot", id=f"episode_{record.index:06d}", index=record.index, task=task, cameras=cameras,
            fps=layout.fps, length=record.length, reader=_FrameReader(layout, record, hub),
            columns=columns.get(record.index, {}), keysteps=record.keysteps,
        ))
    return episodes


def fetch_lerobot(repo_id: str, revision: str | None = None, episodes: Iterable[int] | None = None,
                  cache_dir: str | None = None, videos: bool = True) -> Path:
    """Download a Hub LeRobot dataset's metadata, then the data (and video) files of `episodes` (None: all), into
    the Hugging Face cache; returns the local folder."""
    return _fetch(_Hub(repo_id, revision, cache_dir), episodes, videos).root


# --- metadata ---------------------------------------------------------------------------------------------------


def _read_layout(root: Path, where: str) -> _Layout:
    info = _read_info(root, where)
    version = info["codebase_version"]
    features = info["features"]
    video_keys = tuple(sorted(k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") == "video"))
    image_keys = tuple(sorted(k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") == "image"))
    if video_keys and not info.get("video_path"):
        raise EpisodeSourceError(f"{root / 'meta/info.json'}: features {', '.join(video_keys)} are videos but "
                                 "video_path is not set")
    if version == "v3.0":
        records = _records_v3(root, info, video_keys)
    else:
        records = _records_v2(root, info, video_keys)
    if not records:
        raise EpisodeSourceError(f"{where}: the dataset holds no episodes")
    return _Layout(root, where, version, info["fps"], video_keys, image_keys, records)


def _read_info(root: Path, where: str) -> dict:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise EpisodeSourceError(f"{where}: not a LeRobot dataset ({path} is missing)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EpisodeSourceError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise EpisodeSourceError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(info, dict):
        raise EpisodeSourceError(f"{path}: expected a JSON object")
    missing = [k for k in ("codebase_version", "fps", "features", "data_path") if k not in info]
    if missing:
        raise EpisodeSourceError(f"{path}: no {', '.join(missing)} (not a LeRobot info.json?)")
    if not isinstance(info["features"], dict):
        raise EpisodeSourceError(f"{path}: features is not an object")
    version = info["codebase_version"]
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise EpisodeSourceError(f"{path}: codebase_version {version!r} is not supported (supported: "
                                 f"{', '.join(SUPPORTED_VERSIONS)}); convert older datasets with LeRobot's scripts")
    if info.get("storage_format") == "lance":
        raise EpisodeSourceError(f"{path}: a Lance-backed dataset; only the Parquet/MP4 layout is read")
    info["fps"] = check_fps(info["fps"], f"{path}: fps")
    for key in ("data_path", "video_path"):
        if key in info and not (info[key] is None and key == "video_path") and not isinstance(info[key], str):
            raise EpisodeSourceError(f"{path}: {key} is {info[key]!r}, not a path template (text)")
    chunks = info.get("chunks_size")
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
        raise EpisodeSourceError(f"{path}: chunks_size is {chunks!r}, not a positive whole number")
    return info


def _records_v3(root: Path, info: dict, video_keys: tuple[str, ...]) -> list[_Record]:
    import pyarrow.parquet as pq  # lazy: pyarrow (the [data] extra)

    folder = root / "meta" / "episodes"
    files = sorted(folder.glob("*/*.parquet"))
    if not files:
        raise EpisodeSourceError(f"{folder}: no episode metadata (chunk-XXX/file-XXX.parquet) found")
    rows: list[tuple[Path, dict]] = []
    for file in files:
        with _parquet(file):
            names = [n for n in pq.read_schema(file).names if not n.startswith("stats/")]
            rows.extend((file, row) for row in pq.read_table(file, columns=names).to_pylist())
    records = []
    for file, row in sorted(rows, key=lambda r: _int(r[1], "episode_index", r[0])):
        index = _int(row, "episode_index", file)
        data_path = _format(root, info, "data_path", chunk_index=_int(row, "data/chunk_index", file),
                            file_index=_int(row, "data/file_index", file))
        videos = {}
        for key in video_keys:
            if f"videos/{key}/from_timestamp" not in row:
                raise EpisodeSourceError(f"{file}: camera {key} is a video in info.json but this file has no "
                                         f"videos/{key}/* columns")
            parts = [row.get(f"videos/{key}/{name}") for name in ("chunk_index", "file_index", "from_timestamp")]
            if any(p is None for p in parts):  # a camera some episodes lack
                continue
            end = row.get(f"videos/{key}/to_timestamp")
            where = f"{file} (episode {index}) videos/{key}"
            path = _format(root, info, "video_path", video_key=key, chunk_index=_int(row, f"videos/{key}/chunk_index",
                           file), file_index=_int(row, f"videos/{key}/file_index", file))  # fmt: skip
            videos[key] = _Window(path, _seconds(parts[2], f"{where}/from_timestamp"),
                                  None if end is None else _seconds(end, f"{where}/to_timestamp"))
        records.append(_Record(index, _length(row, file), _tasks(row.get("tasks"), f"{file} (episode {index})"),
                               data_path, videos, _keysteps(row, info["fps"], f"{file} (episode {index})")))
    return records


def _records_v2(root: Path, info: dict, video_keys: tuple[str, ...]) -> list[_Record]:
    path = root / "meta" / "episodes.jsonl"
    chunks_size = info.get("chunks_size") or DEFAULT_CHUNKS_SIZE
    records = []
    for row in _jsonl(path):
        index = _int(row, "episode_index", path)
        chunk = index // chunks_size
        data_path = _format(root, info, "data_path", episode_chunk=chunk, episode_index=index)
        videos = {key: _Window(_format(root, info, "video_path", episode_chunk=chunk, video_key=key,
                                       episode_index=index)) for key in video_keys}  # fmt: skip
        records.append(_Record(index, _length(row, path), _tasks(row.get("tasks"), f"{path} (episode {index})"),
                               data_path, videos, _keysteps(row, info["fps"], f"{path} (episode {index})")))
    return sorted(records, key=lambda r: r.index)


def _keysteps(row: dict, fps: float, where: str) -> list[KeyStep] | None:
    """Key steps from an episode's SARM-style columns, or None when it has none; annotations that are not steps
    ending in rising order are left out with a warning (the dataset stays readable)."""
    ends, frames = row.get("subtask_end_times"), row.get("subtask_end_frames")
    if ends is None and isinstance(frames, list):
        ends = [f / fps if isinstance(f, (int, float)) else f for f in frames]
    if not isinstance(ends, list) or not ends:
        return None
    names = row.get("subtask_names")
    names = list(names) if isinstance(names, list) else []
    try:
        return parse_keysteps([{"end": t, "text": n} for t, n in zip(ends, names + [None] * len(ends))], where)
    except EpisodeSourceError as err:
        log.warning("key steps left out: %s", err)
        return None


def _task_names(layout: _Layout) -> dict[int, str]:
    """task_index -> task text, from meta/tasks.parquet (v3.0) or meta/tasks.jsonl (v2.x)."""
    if layout.version != "v3.0":
        path = layout.root / "meta" / "tasks.jsonl"
        return {_int(row, "task_index", path): str(row.get("task")) for row in _jsonl(path)}
    import pyarrow.parquet as pq  # lazy: pyarrow (the [data] extra)

    path = layout.root / "meta" / "tasks.parquet"
    if not path.is_file():
        raise EpisodeSourceError(f"{path} is missing (the episode metadata names no tasks either)")
    with _parquet(path):
        table = pq.read_table(path)
    text_column = "task" if "task" in table.column_names else None
    if text_column is None:  # LeRobot writes the task text as the pandas index of the frame
        index_columns = (table.schema.pandas_metadata or {}).get("index_columns", [])
        text_column = next((c for c in index_columns if isinstance(c, str) and c in table.column_names), None)
    if text_column is None or "task_index" not in table.column_names:
        raise EpisodeSourceError(f"{path}: expected the task text (as index or a 'task' column) and task_index; "
                                 f"found columns {', '.join(table.column_names)}")
    return {index: str(text) for index, text in zip(table["task_index"].to_pylist(), table[text_column].to_pylist())}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EpisodeSourceError(f"{path} is missing")
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EpisodeSourceError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EpisodeSourceError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise EpisodeSourceError(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    return rows


def _int(row: dict, key: str, where: Path) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):  # fmt: skip
        raise EpisodeSourceError(f"{where}: an episode without a whole number {key} ({value!r})")
    return int(value)


def _length(row: dict, where: Path) -> int:
    length = _int(row, "length", where)
    if length < 0:
        raise EpisodeSourceError(f"{where}: episode {row.get('episode_index')} has length {length}")
    return length


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise EpisodeSourceError(f"{where} is {value!r}, not a time in seconds")
    return float(value)


def _tasks(value: object, where: str) -> list[str]:
    """An episode's task texts: LeRobot writes a list; a single text (as some converters do) is one task, not a list
    of its characters."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t for t in value if t]
    raise EpisodeSourceError(f"{where}: tasks is {value!r}"[:200] + ", not a list of task texts")


def _format(root: Path, info: dict, template_key: str, **values) -> str:
    """A path template of info.json filled in: relative to the dataset root, and refused when it leads out of it."""
    template = info.get(template_key)
    where = root / "meta" / "info.json"
    try:
        relative = template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError) as err:
        raise EpisodeSourceError(f"{where}: {template_key} {template!r} does not fit this codebase version "
                                 f"({type(err).__name__}: {err})") from None
    try:  # by name only: a Hub cache snapshot is made of links to ../../blobs
        confined(relative, root, f"{where}: {template_key}", resolve=False)
    except OutsideRootError as err:
        raise EpisodeSourceError(str(err)) from None
    return relative


@contextmanager
def _parquet(path: Path) -> Iterator[None]:
    """Errors of reading a Parquet file as one line naming it."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)

    try:
        yield
    except (OSError, pa.ArrowException) as err:
        raise EpisodeSourceError(f"{path}: not a readable Parquet file ({_first_line(err)})") from None


# --- per-frame columns --------------------------------------------------------------------------------------------


def _frame_columns(layout: _Layout) -> tuple[dict[int, dict[str, list]], dict[int, int]]:
    """Per episode: the annotation columns and timestamps by name; and the task_index of its first frame."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)
    import pyarrow.parquet as pq

    by_file: dict[str, list[_Record]] = {}
    for record in layout.records:
        by_file.setdefault(record.data_path, []).append(record)
    columns: dict[int, dict[str, list]] = {}
    first_tasks: dict[int, int] = {}
    for relative, records in by_file.items():
        path = layout.root / relative
        with _parquet(path):
            schema = pq.read_schema(path)
        if "episode_index" not in schema.names:
            raise EpisodeSourceError(f"{path}: no episode_index column")
        absent = [k for k in layout.image_keys if k not in schema.names]
        if absent:
            raise EpisodeSourceError(f"{path}: no column {absent[0]} (an image feature in meta/info.json)")
        scalar = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string, pa.types.is_large_string)
        names = [f.name for f in schema if f.name not in STANDARD_COLUMNS and any(t(f.type) for t in scalar)]
        present = [n for n in ("timestamp", "frame_index", "task_index") if n in schema.names]
        with _parquet(path):
            table = pq.read_table(path, columns=["episode_index", *present, *names])
        episode_of = table["episode_index"].to_numpy()
        order_key = table["frame_index"].to_numpy() if "frame_index" in present else np.arange(len(episode_of))
        order = np.lexsort((order_key, episode_of))
        values = {n: table[n].to_pylist() for n in (*present, *names)}
        sorted_episodes = episode_of[order]
        for record in records:
            lo, hi = np.searchsorted(sorted_episodes, [record.index, record.index + 1])
            rows = order[lo:hi]
            if len(rows) != record.length:
                raise EpisodeSourceError(f"{path}: episode {record.index} has {len(rows)} frame rows, its metadata "
                                         f"says length {record.length}")
            picked = {n: [values[n][i] for i in rows] for n in ("timestamp", *names) if n in values}
            columns[record.index] = picked
            if "task_index" in values and len(rows):
                first_tasks[record.index] = values["task_index"][rows[0]]
    return columns, first_tasks


# --- frames -------------------------------------------------------------------------------------------------------


@dataclass
class _FrameReader:
    """Episode.reader: frames of one episode, decoded when asked (one pass over the video per call)."""

    layout: _Layout
    record: _Record
    hub: _Hub | None = None

    def __call__(self, camera: str, indices: Sequence[int]) -> list[np.ndarray]:
        if camera in self.record.videos:
            return self._video(camera, indices)
        return self._images(camera, indices)

    def _local(self, relative: str) -> Path:
        path = self.layout.root / relative
        if not path.is_file() and self.hub is not None:
            self.hub.download([relative])
        if not path.is_file():
            raise EpisodeSourceError(f"{self.layout.where}: {relative} is missing (episode {self.record.index})")
        _check_links(self.layout.root, [path], self.layout.where)
        return path

    def _video(self, camera: str, indices: Sequence[int]) -> list[np.ndarray]:
        window = self.record.videos[camera]
        path = self._local(window.path)
        fps = self.layout.fps
        order = sorted(range(len(indices)), key=lambda k: indices[k])
        wanted = [window.start + indices[k] / fps for k in order]
        if window.end is not None and wanted and wanted[-1] > window.end - 0.5 / fps:
            raise EpisodeSourceError(f"{path}: episode {self.record.index} frame {indices[order[-1]]} would be at "
                                     f"{wanted[-1]:.3f} s, past the episode's video window "
                                     f"[{window.start:.3f}, {window.end:.3f}) s: its length and timestamps disagree")
        frames: list[np.ndarray | None] = [None] * len(indices)
        try:
            decoded = decode(path, start=window.start, end=window.end, times=wanted)
            for k, want, (t, pixels) in zip(order, wanted, decoded):
                if abs(t - want) > 1.0 / fps:  # the video ends early or its frames are not where metadata says
                    raise EpisodeSourceError(f"{path}: no frame near {want:.3f} s (episode {self.record.index} frame "
                                             f"{indices[k]}; nearest at {t:.3f} s)")
                frames[k] = pixels
        except VideoError as err:
            raise EpisodeSourceError(f"episode {self.record.index}, camera {camera}: {err}") from None
        if any(f is None for f in frames):
            raise EpisodeSourceError(f"{path}: no frames decoded for episode {self.record.index}")
        return frames

    def _images(self, camera: str, indices: Sequence[int]) -> list[np.ndarray]:
        import pyarrow.parquet as pq  # lazy: pyarrow (the [data] extra)

        path = self._local(self.record.data_path)
        with _parquet(path):
            order = ["frame_index"] if "frame_index" in pq.read_schema(path).names else []
            table = pq.read_table(path, columns=[camera, "episode_index", *order],
                                  filters=[("episode_index", "=", self.record.index)])
        if order:
            table = table.take(np.argsort(table["frame_index"].to_numpy(), kind="stable"))
        cells = table[camera].take(list(indices)).to_pylist()
        frames = []
        for i, cell in zip(indices, cells):
            data = cell.get("bytes") if isinstance(cell, dict) else None
            where = f"{path}: {camera} of episode {self.record.index} frame {i}"
            if data:
                source = io.BytesIO(data)
            else:
                name = cell.get("path") if isinstance(cell, dict) else None
                if not isinstance(name, str) or not name:
                    raise EpisodeSourceError(f"{where} has neither image bytes nor a path")
                try:
                    source = confined(name, self.layout.root, f"{where}: path", resolve=False)
                    _check_links(self.layout.root, [source], where)
                except OutsideRootError as err:
                    raise EpisodeSourceError(str(err)) from None
            try:
                with Image.open(source) as image:
                    frames.append(np.asarray(image.convert("RGB")))
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                raise EpisodeSourceError(f"{path}: {camera} of episode {self.record.index} frame {i} is not a "
                                         f"readable image ({err})") from None
        return frames


# --- the Hub ------------------------------------------------------------------------------------------------------


@dataclass
class _Hub:
    """Downloads of one Hub dataset, pinned to the commit the first download resolved."""

    repo_id: str
    revision: str | None = None
    cache_dir: str | None = None

    def download(self, patterns: list[str]) -> Path:
        try:
            from huggingface_hub import snapshot_download  # lazy: huggingface_hub (the [data] extra)
            from huggingface_hub.errors import (
                GatedRepoError,
                HfHubHTTPError,
                HFValidationError,
                LocalEntryNotFoundError,
                RepositoryNotFoundError,
                RevisionNotFoundError,
            )
        except ImportError:
            raise EpisodeSourceError(f"{self.repo_id}: reading Hub datasets needs huggingface_hub (pip install "
                                     "huggingface_hub), or download the dataset and pass lerobot:DIR") from None
        try:
            import httpx

            unreachable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, httpx.HTTPError)
        except ImportError:
            unreachable = (ConnectionError, TimeoutError)
        try:
            folder = Path(snapshot_download(self.repo_id, repo_type="dataset", revision=self.revision,
                                            allow_patterns=patterns, cache_dir=self.cache_dir))
        except GatedRepoError:
            raise EpisodeSourceError(f"Hub dataset {self.repo_id} is gated: accept its terms on the Hub and log in "
                                     "(hf auth login)") from None
        except RepositoryNotFoundError:
            raise EpisodeSourceError(f"Hub dataset {self.repo_id} not found (or private: log in with hf auth login)"
                                     ) from None
        except RevisionNotFoundError:
            raise EpisodeSourceError(f"Hub dataset {self.repo_id} has no revision {self.revision!r}") from None
        except HFValidationError as err:
            raise EpisodeSourceError(f"{self.repo_id!r} is not a valid Hub dataset id ({err})") from None
        except (LocalEntryNotFoundError, HfHubHTTPError, *unreachable) as err:
            raise EpisodeSourceError(
                f"could not reach the Hugging Face Hub to download the dataset {self.repo_id} (and it is not in the "
                f"local cache): {_first_line(err)}. Download it on a machine that can (hf download {self.repo_id} "
                f"--repo-type dataset --local-dir DIR), copy DIR here and pass lerobot:DIR") from None
        except OSError as err:
            raise EpisodeSourceError(f"Hub dataset {self.repo_id}: the download failed ({_first_line(err)})") from None
        if re.fullmatch(r"[0-9a-f]{40}", folder.name):  # a cache snapshot folder: later files from the same commit
            self.revision = folder.name
        return folder


def _cache_folder(root: Path) -> Path | None:
    """The Hugging Face cache folder of the dataset (`<cache>/datasets--<owner>--<name>`) when `root` is one of its
    snapshots (`snapshots/<commit>` in it), else None."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith(("datasets--", "models--")):
        return root.parent.parent
    return None


def _tree(folder: Path) -> list[Path]:
    """Every file and folder under `folder`, links included (not followed)."""
    paths = []
    for parent, folders, files in os.walk(folder):
        paths.extend(Path(parent) / name for name in (*folders, *files))
    return paths


def _check_links(root: Path, paths: Iterable[Path], where: str) -> None:
    """Refuse a path of a Hub cache snapshot `root` that leads (by a link) outside the dataset's cache folder. A
    snapshot's files are links to `../../blobs/<hash>` in that folder by design: those are followed. A dataset folder
    that is no cache snapshot is not checked here (its paths are checked by name)."""
    folder = _cache_folder(root)
    if folder is None:
        return
    boundary = Path(os.path.realpath(folder))
    for path in paths:
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(boundary):
            raise EpisodeSourceError(f"{where}: {path} leads outside the dataset's Hugging Face cache folder "
                                     f"{folder} (to {target}); not read")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__


def _fetch(hub: _Hub, episodes: Iterable[int] | None, videos: bool) -> _Layout:
    root = hub.download(["meta/**"])
    where = f"Hub dataset {hub.repo_id} ({root})"
    _check_links(root, _tree(root / "meta"), where)
    layout = _read_layout(root, where)
    if episodes is None:  # whole folders: one pattern per file would be slow to match for thousands of episodes
        patterns = sorted({p.split("/", 1)[0] + "/**" for p in layout.files(None, videos)})
    else:
        episodes = list(episodes)
        known = {r.index for r in layout.records}
        unknown = [i for i in episodes if i not in known]
        if unknown:
            raise EpisodeSourceError(f"Hub dataset {hub.repo_id} has no episode {unknown[0]}")
        patterns = layout.files(episodes, videos)
    hub.download(patterns)
    _check_links(root, _tree(root), where)
    missing = [p for p in layout.files(episodes, videos) if not (root / p).is_file()]
    if missing:
        raise EpisodeSourceError(f"Hub dataset {hub.repo_id}: {missing[0]} is not in the dataset")
    return layout
