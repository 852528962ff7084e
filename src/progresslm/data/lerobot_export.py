"""Episodes from any source (`data.sources.open_episodes`) written as a LeRobot v3.0 dataset, in the layout LeRobot
itself writes and `data.lerobot` reads (that module names the parts of LeRobot's code the layout follows):

    meta/info.json                                  codebase_version "v3.0", fps, features, path templates, totals
    meta/tasks.parquet                              task text (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet        a row per episode: tasks, length, where its frame rows and its
                                                    window of each camera's video are, its key steps, and
                                                    source_episode (its id in the source)
    meta/subtasks.parquet                           step text (pandas index "subtask") -> subtask_index, see below
    data/chunk-000/file-000.parquet                 a row per frame: index, episode_index, frame_index, timestamp,
                                                    task_index, subtask_index, the source's per-frame columns
    videos/observation.images.<camera>/chunk-000/file-000.mp4    the episodes back to back, one encoder per camera

An episode's frame i lies at from_timestamp + i / fps in its camera's file. Like LeRobot, a data or video file that
has grown past its size limit is closed at the next episode boundary and the next episode starts file-001.

Key steps (`Episode.keysteps`) are written twice:
- per frame, `subtask_index`: the key step the frame belongs to (frames up to and including the first step's end
  frame are 0, and so on; frames after the last step's end, and all frames of episodes without key steps, are -1,
  LeRobot's value for unannotated frames); `--keyframes column:subtask_index` rebuilds the steps from it.
- per episode in meta/episodes, the columns LeRobot's SARM reward model reads (`lerobot.policies.sarm`,
  `data_processing/sarm_annotations`): subtask_names, subtask_start_frames, subtask_end_frames (inclusive),
  subtask_start_times, subtask_end_times (seconds); `data.lerobot` reads them back into `Episode.keysteps`.
LeRobot 0.4-0.5 also resolves a frame's `subtask` text as row `subtask_index` of meta/subtasks.parquet, a table of
step texts shared by the whole dataset; that table is written only when it agrees with the step numbers above (every
annotated episode's step k has the same text), since otherwise LeRobot would name the wrong step."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from progresslm.data.episodes import Episode
from progresslm.io import OutsideRootError, confined

log = logging.getLogger(__name__)

CODECS = {"libx264": "h264", "libsvtav1": "av1"}  # encoder -> the codec name LeRobot's info.json states
# LeRobot's encode_video_frames defaults: a key frame every other frame, so that training reads any frame quickly
ENCODER_OPTIONS = {"g": "2", "crf": "30"}
X264_PRESET = "veryfast"  # LeRobot leaves libx264 at "medium": about 3x slower for a few percent smaller files
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILE_MB = 100  # a data file past this starts the next one (LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB)
VIDEO_FILE_MB = 200  # the same for video files (LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB)
READ_MB = 128  # frames decoded per read of one camera: memory stays bounded for long high-resolution episodes
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CAMERA_PREFIX = "observation.images."
MANIFEST = "meta/progresslm_export.json"  # the files an export wrote: all that a later --overwrite may remove
SUBTASK_COLUMN = "subtask_index"
STANDARD_COLUMNS = ("index", "episode_index", "frame_index", "timestamp", "task_index")  # LeRobot's DEFAULT_FEATURES
FEATURE_DTYPES = {"int64": "int64", "double": "float64", "bool": "bool", "string": "string"}  # arrow -> LeRobot


class LeRobotExportError(ValueError):
    """Episodes or settings that cannot be written as a LeRobot dataset: says what and where."""


@dataclass
class _Plan:
    """One episode as it will be written."""

    episode: Episode
    index: int  # its episode_index in the new dataset
    frames: list[int]  # the source frame of each written frame (all of them unless the frame rate changes)
    subtask: list[int] | None  # per written frame; None: the episode has no key steps
    steps: dict[str, list] | None  # the SARM-style per-episode columns


def export_lerobot(episodes: list[Episode], root: Path, fps: float | None = None, codec: str = "libx264",
                   size: int | None = None, robot_type: str = "unknown", overwrite: bool = False,
                   progress: bool = False) -> Path:
    """Write `episodes` as a LeRobot v3.0 dataset in `root` and return it. `fps`: the dataset's frame rate (None:
    the episodes', which must then agree; another rate picks each episode's nearest frames). `codec`: "libx264"
    (H.264) or "libsvtav1" (AV1, LeRobot's default). `size`: shorter image side in pixels (larger frames shrink).
    The dataset is written into a fresh folder beside `root` that this call creates (and removes on an error) and
    renamed into place once complete; an existing non-empty `root` is refused unless `overwrite`, and then only the
    files an earlier export listed in its manifest (`MANIFEST`) are replaced: nothing else in `root` is removed."""
    root = Path(root).expanduser().resolve()
    previous = _check_target(root, overwrite)
    if not episodes:
        raise LeRobotExportError("no episodes to export (the source, or its --episodes selection, holds none)")
    if codec not in CODECS:
        raise LeRobotExportError(f"codec {codec!r}: use one of {', '.join(CODECS)}")
    if size is not None and size < 2:
        raise LeRobotExportError(f"size {size}: the shorter image side must be at least 2 pixels")
    rate = _frame_rate(episodes, fps)
    cameras = _camera_keys(episodes)
    plans = [_plan(e, i, rate) for i, e in enumerate(episodes)]
    columns = _column_types(episodes, skip=(SUBTASK_COLUMN,) if any(p.subtask for p in plans) else ())
    tasks = list(dict.fromkeys(e.task for e in episodes))
    root.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{root.name}.export-", dir=root.parent))  # ours alone: a new name
    try:
        rows, shapes = _write_frames(folder, plans, cameras, columns, tasks, rate, codec, size, progress)
        _write_meta(folder, plans, rows, shapes, columns, tasks, rate, codec, robot_type)
        _write_manifest(folder)
        _place(folder, root, previous)
    finally:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    frames = sum(len(p.frames) for p in plans)
    log.info("wrote %d episodes, %d frames, %d cameras to %s", len(plans), frames, len(cameras), root)
    return root


# --- checks and plans ---------------------------------------------------------------------------------------------


def _check_target(root: Path, overwrite: bool) -> list[str] | None:
    """None for a new or empty `root`; with `overwrite`, the files the earlier export in `root` wrote."""
    if root.exists() and not root.is_dir():
        raise LeRobotExportError(f"{root} is a file; the dataset needs a folder (choose another --out)")
    if not (root.is_dir() and any(root.iterdir())):
        return None
    if not overwrite:
        raise LeRobotExportError(f"{root} exists and is not empty; choose another --out, or pass --overwrite "
                                 "to replace the LeRobot dataset an earlier export-lerobot wrote there")
    manifest = root / MANIFEST
    if not (root / "meta" / "info.json").is_file():
        raise LeRobotExportError(f"{root} holds files but no LeRobot dataset (no meta/info.json): --overwrite "
                                 "replaces only a dataset export-lerobot wrote; choose another --out")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise LeRobotExportError(f"{root}: no readable {MANIFEST} listing what export-lerobot wrote there, so "
                                 "--overwrite would not know which files are its own; choose another --out, or "
                                 "empty the folder yourself") from None
    return files


def _write_manifest(folder: Path) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    text = json.dumps({"written_by": "progresslm data export-lerobot", "files": [*files, MANIFEST]}, indent=1,
                      allow_nan=False)
    (folder / MANIFEST).write_text(text + "\n", encoding="utf-8")


def _own_file(root: Path, relative: str) -> Path | None:
    """`root/relative` when it is a plain file reached without a symlink on the way; else None (left alone)."""
    try:
        path = confined(relative, root, "manifest entry", resolve=False)
    except OutsideRootError:
        return None
    step = root
    for part in path.relative_to(root).parts:
        step = step / part
        if step.is_symlink():
            return None
    return path if path.is_file() else None


def _place(folder: Path, root: Path, previous: list[str] | None) -> None:
    """Move the finished export in `folder` to `root`: a rename when `root` is new or empty; else the files of the
    earlier export (`previous`) are removed and the new ones moved in, and nothing else in `root` is touched."""
    if previous is None:
        if root.is_dir():
            root.rmdir()  # empty: checked before the export began (an error here if something arrived since)
        os.replace(folder, root)
        return
    new = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    theirs = [f for f in new if f not in previous and (root / f).exists()]
    if theirs:
        raise LeRobotExportError(f"{root / theirs[0]} is not a file an earlier export wrote (not in {MANIFEST}) but "
                                 "the new export would replace it; move it away or choose another --out")
    for relative in new:
        step = root
        for part in Path(relative).parts[:-1]:
            step = step / part
            if step.is_symlink():
                raise LeRobotExportError(f"{step} is a symlink: export-lerobot neither writes nor removes through "
                                         "links; replace it with a folder or choose another --out")
    removed_from: set[Path] = set()
    for relative in previous:
        path = _own_file(root, relative)
        if path is not None:
            path.unlink()
            removed_from.add(path.parent)
    for relative in new:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / relative, target)
    for parent in sorted(removed_from, key=lambda p: len(p.parts), reverse=True):  # folders emptied: deepest first
        while parent != root and parent.is_dir() and not parent.is_symlink() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _frame_rate(episodes: list[Episode], fps: float | None) -> float:
    if fps is not None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise LeRobotExportError(f"fps {fps!r}: the frame rate must be a positive number")
        return float(fps)
    rates: dict[float, Episode] = {}
    for e in episodes:
        rates.setdefault(round(e.fps, 6), e)
    if len(rates) > 1:
        shown = ", ".join(f"{r:g} fps (episode {e.id})" for r, e in rates.items())
        raise LeRobotExportError(f"the episodes have different frame rates: {shown}; a LeRobot dataset has one: pass "
                                 "fps to resample them (each written frame is the source frame nearest in time)")
    return float(episodes[0].fps)


def _camera_keys(episodes: list[Episode]) -> dict[str, str]:
    """LeRobot feature key -> the source's camera name; every episode must have the same cameras."""
    first = episodes[0]
    for e in episodes[1:]:
        if set(e.cameras) != set(first.cameras):
            raise LeRobotExportError(f"episode {e.id} has cameras {', '.join(e.cameras)} but episode {first.id} has "
                                     f"{', '.join(first.cameras)}; a LeRobot dataset has the same cameras in every "
                                     "episode: export the episodes of one camera set at a time (--episodes)")
    keys: dict[str, str] = {}
    for camera in sorted(first.cameras):
        name = camera if camera.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + camera
        keys[name.replace("/", "_")] = camera  # LeRobot refuses feature names holding "/"
    if len(keys) != len(first.cameras):
        raise LeRobotExportError(f"cameras {', '.join(first.cameras)} map to the same LeRobot feature key")
    return keys


def _plan(episode: Episode, index: int, rate: float) -> _Plan:
    if episode.length < 1:
        raise LeRobotExportError(f"episode {episode.id} has no frames")
    if abs(episode.fps - rate) < 1e-6:
        frames = list(range(episode.length))
    else:
        count = int(math.floor(episode.duration * rate + 1e-6)) + 1
        frames = [min(episode.length - 1, int(round(j * episode.fps / rate))) for j in range(count)]
    if not episode.keysteps:
        return _Plan(episode, index, frames, None, None)
    steps = episode.keysteps
    last = len(frames) - 1
    ends = [min(int(round(s.end * rate)), last) for s in steps]  # as `data build` places key frames
    subtask = [k if (k := bisect_left(ends, j)) < len(ends) else -1 for j in range(len(frames))]
    columns = {
        "subtask_names": [s.text for s in steps],
        "subtask_start_frames": [0, *(end + 1 for end in ends[:-1])],
        "subtask_end_frames": ends,
        "subtask_start_times": [0.0, *(s.end for s in steps[:-1])],
        "subtask_end_times": [s.end for s in steps],
    }
    return _Plan(episode, index, frames, subtask, columns)


def _column_types(episodes: list[Episode], skip: Sequence[str]) -> dict[str, object]:
    """The source's per-frame columns that every episode has, with one numeric, boolean or string type: name ->
    arrow type. Others are left out with a warning; a column of the wrong length is an error."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)

    names = dict.fromkeys(n for e in episodes for n in e.columns if n not in STANDARD_COLUMNS and n not in skip)
    out = {}
    for name in names:
        lacking = [e.id for e in episodes if name not in e.columns]
        if lacking:
            log.warning("column %s left out: episode %s (and %d more) lacks it", name, lacking[0], len(lacking) - 1)
            continue
        types = set()
        for e in episodes:
            values = e.columns[name]
            if len(values) != e.length:
                raise LeRobotExportError(f"episode {e.id}: column {name} has {len(values)} values for "
                                         f"{e.length} frames")
            types.add(_scalar_type(values))
        if types == {pa.int64(), pa.float64()}:
            types = {pa.float64()}
        if len(types) != 1 or None in types:
            log.warning("column %s left out: its values are not all numbers, booleans or strings of one type", name)
            continue
        out[name] = types.pop()
    return out


def _scalar_type(values: list):
    """int64, float64, bool or string for a list of such scalars (None allowed); None for anything else."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)

    try:
        kind = pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if pa.types.is_integer(kind):
        return pa.int64()
    if pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_boolean(kind):
        return pa.bool_()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.string()
    return None


# --- frames -------------------------------------------------------------------------------------------------------


class _Files:
    """Where the next episode goes in one family of chunk-XXX/file-YYY files: the next file once the bytes written
    to the current one have passed its size limit."""

    def __init__(self, limit_mb: float) -> None:
        self.chunk = self.file = 0
        self.limit = limit_mb * 2**20
        self.bytes = 0  # written to the current file

    @property
    def full(self) -> bool:
        return self.bytes > self.limit

    def advance(self) -> None:
        self.file, self.bytes = self.file + 1, 0
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


class _VideoWriter:
    """One camera's video files: episodes back to back, one encoder open across the episodes of a file."""

    def __init__(self, root: Path, key: str, rate: float, codec: str, size: int | None) -> None:
        self.root, self.key, self.rate, self.codec, self.size = root, key, rate, codec, size
        self.files = _Files(VIDEO_FILE_MB)
        self.container = self.stream = self.path = None
        self.written = 0  # frames in the current file
        self.source_shape: tuple[int, int] | None = None  # (height, width) of the source frames
        self.shape: tuple[int, int] | None = None  # (height, width) written
        self.batch = 32  # frames per read, until a frame's size is known

    def start_episode(self) -> tuple[int, int, float]:
        """(chunk, file, from_timestamp) of the next episode."""
        if self.container is not None and self.files.full:
            self.close()
            self.files.advance()
            self.written = 0
        return self.files.chunk, self.files.file, self.written / self.rate

    def write(self, frames: list[np.ndarray], episode: Episode, camera: str, first: int) -> None:
        import av  # lazy: PyAV (the [data] extra)

        for offset, pixels in enumerate(frames):
            pixels = np.asarray(pixels)
            if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
                raise LeRobotExportError(f"episode {episode.id}, camera {camera}, frame {first + offset}: expected "
                                         f"H x W x 3 uint8 RGB, got {pixels.dtype} {pixels.shape}")
            if pixels.shape[:2] != self.source_shape:
                self._set_shape(pixels, episode, camera)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame = frame.reformat(width=self.shape[1], height=self.shape[0], format="yuv420p")
            if self.container is None:
                self._open()
            frame.pts = self.written
            frame.time_base = 1 / self.stream.average_rate
            try:
                for packet in self.stream.encode(frame):
                    self.files.bytes += packet.size
                    self.container.mux(packet)
            except av.FFmpegError as err:
                raise LeRobotExportError(f"{self.path}: encoding with {self.codec} failed at episode {episode.id} "
                                         f"frame {first + offset} ({err})") from None
            self.written += 1

    def _set_shape(self, pixels: np.ndarray, episode: Episode, camera: str) -> None:
        height, width = pixels.shape[:2]
        scale = self.size / min(height, width) if self.size and min(height, width) > self.size else 1.0
        shape = (max(2, int(round(height * scale / 2)) * 2), max(2, int(round(width * scale / 2)) * 2))  # yuv420p
        if self.shape is not None and shape != self.shape:
            raise LeRobotExportError(
                f"episode {episode.id}, camera {camera}: frames of {width} x {height} would be written "
                f"{shape[1]} x {shape[0]}, but earlier episodes' are {self.shape[1]} x {self.shape[0]}; a camera has "
                "one size in a LeRobot dataset: export episodes of one size (and aspect ratio) together, or pass "
                "--size to scale frames of one aspect ratio alike")
        self.source_shape, self.shape = (height, width), shape
        self.batch = max(8, min(512, READ_MB * 2**20 // pixels.nbytes))

    def _open(self) -> None:
        import av  # lazy: PyAV (the [data] extra)

        self.path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.files.chunk,
                                                  file_index=self.files.file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = dict(ENCODER_OPTIONS, **({"preset": X264_PRESET} if self.codec == "libx264" else {}))
        self.container = av.open(str(self.path), "w")
        try:
            self.stream = self.container.add_stream(self.codec, rate=Fraction(self.rate).limit_denominator(1001),
                                                    options=options)
        except (av.FFmpegError, ValueError) as err:
            self.container.close()
            raise LeRobotExportError(f"codec {self.codec} is not available in this PyAV build ({err}); use "
                                     f"{' or '.join(c for c in CODECS if c != self.codec)}") from None
        self.stream.height, self.stream.width = self.shape
        self.stream.pix_fmt = "yuv420p"

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = self.stream = None


class _DataWriter:
    """The frame rows, episode by episode (a row group each), into data files of bounded size."""

    def __init__(self, root: Path, schema) -> None:
        self.root, self.schema = root, schema
        self.files = _Files(DATA_FILE_MB)
        self.writer = self.path = None

    def start_episode(self) -> tuple[int, int]:
        if self.writer is not None and self.files.full:
            self.close()
            self.files.advance()
        return self.files.chunk, self.files.file

    def write(self, table) -> None:
        import pyarrow.parquet as pq  # lazy: pyarrow (the [data] extra)

        if self.writer is None:
            self.path = self.root / DATA_PATH.format(chunk_index=self.files.chunk, file_index=self.files.file)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)
        self.files.bytes += table.nbytes  # in memory: an upper bound of the compressed size

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _write_frames(root: Path, plans: list[_Plan], cameras: dict[str, str], columns: dict, tasks: list[str],
                  rate: float, codec: str, size: int | None, progress: bool) -> tuple[list[dict], dict]:
    """Encode every camera and write the frame rows, episode by episode; returns the episode metadata rows and each
    camera's written (height, width)."""
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)

    annotated = any(p.subtask is not None for p in plans)
    fields = [("index", pa.int64()), ("episode_index", pa.int64()), ("frame_index", pa.int64()),
              ("timestamp", pa.float32()), ("task_index", pa.int64()), *columns.items()]
    schema = pa.schema(fields + ([(SUBTASK_COLUMN, pa.int64())] if annotated else []))
    videos = {key: _VideoWriter(root, key, rate, codec, size) for key in cameras}
    data = _DataWriter(root, schema)
    task_index = {t: i for i, t in enumerate(tasks)}
    rows: list[dict] = []
    start = 0
    bar = tqdm(total=sum(len(p.frames) for p in plans) * len(cameras), desc="export", unit="frame",
               disable=not progress)
    try:
        for plan in plans:
            e, n = plan.episode, len(plan.frames)
            chunk, file = data.start_episode()
            row = {"episode_index": plan.index, "tasks": [e.task], "length": n, "data/chunk_index": chunk,
                   "data/file_index": file, "dataset_from_index": start, "dataset_to_index": start + n}
            for key, camera in cameras.items():
                writer = videos[key]
                v_chunk, v_file, offset = writer.start_episode()
                done = 0
                while done < n:
                    batch = plan.frames[done:done + writer.batch]
                    frames = e.read(camera, batch)
                    if len(frames) != len(batch):
                        raise LeRobotExportError(f"episode {e.id}, camera {camera}: asked for {len(batch)} frames "
                                                 f"from frame {batch[0]}, the source returned {len(frames)}")
                    writer.write(frames, e, camera, batch[0])
                    done += len(batch)
                    bar.update(len(batch))
                row.update({f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                            f"videos/{key}/from_timestamp": offset, f"videos/{key}/to_timestamp": offset + n / rate})
            values = {"index": range(start, start + n), "episode_index": [plan.index] * n, "frame_index": range(n),
                      "timestamp": [j / rate for j in range(n)], "task_index": [task_index[e.task]] * n}
            values.update({name: [e.columns[name][i] for i in plan.frames] for name in columns})
            if annotated:
                values[SUBTASK_COLUMN] = plan.subtask or [-1] * n
            data.write(pa.table({name: pa.array(values[name], schema.field(name).type) for name in schema.names}))
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "source_episode": e.id})
            if annotated:
                row.update(plan.steps or dict.fromkeys(("subtask_names", "subtask_start_frames", "subtask_end_frames",
                                                        "subtask_start_times", "subtask_end_times")))
            rows.append(row)
            start += n
    finally:
        bar.close()
        data.close()
        for writer in videos.values():
            writer.close()
    return rows, {key: writer.shape for key, writer in videos.items()}


# --- metadata -----------------------------------------------------------------------------------------------------


def _write_meta(root: Path, plans: list[_Plan], rows: list[dict], shapes: dict, columns: dict, tasks: list[str],
                rate: float, codec: str, robot_type: str) -> None:
    import pyarrow as pa  # lazy: pyarrow (the [data] extra)
    import pyarrow.parquet as pq

    path = root / EPISODES_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    list_types = {"subtask_names": pa.list_(pa.string()), "subtask_start_frames": pa.list_(pa.int64()),
                  "subtask_end_frames": pa.list_(pa.int64()), "subtask_start_times": pa.list_(pa.float64()),
                  "subtask_end_times": pa.list_(pa.float64()), "tasks": pa.list_(pa.string())}
    pq.write_table(pa.table({name: pa.array([r[name] for r in rows], list_types.get(name)) for name in rows[0]}),
                   path)
    _write_indexed(root / "meta" / "tasks.parquet", tasks, "task", "task_index")
    texts = _shared_step_texts(plans)
    if texts:
        _write_indexed(root / "meta" / "subtasks.parquet", texts, "subtask", SUBTASK_COLUMN)
    features: dict[str, dict] = {}
    for key, (height, width) in shapes.items():
        features[key] = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                         "info": {"video.height": height, "video.width": width, "video.codec": CODECS[codec],
                                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": rate,
                                  "video.channels": 3, "has_audio": False}}
    for name, kind in columns.items():
        features[name] = {"dtype": FEATURE_DTYPES[str(kind)], "shape": [1], "names": None}
    if any(p.subtask is not None for p in plans):
        features[SUBTASK_COLUMN] = {"dtype": "int64", "shape": [1], "names": None}
    for name, dtype in [("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")]:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": "v3.0", "robot_type": robot_type, "total_episodes": len(plans),
        "total_frames": sum(len(p.frames) for p in plans), "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": int(rate) if float(rate).is_integer() else rate, "splits": {"train": f"0:{len(plans)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features,
    }
    text = json.dumps(info, indent=4, ensure_ascii=False, allow_nan=False)  # strict JSON: rates are checked finite
    (root / "meta" / "info.json").write_text(text + "\n", encoding="utf-8")


def _shared_step_texts(plans: list[_Plan]) -> list[str] | None:
    """The step texts by step number when every annotated episode's step k has the same text (and the texts differ):
    then LeRobot's lookup of subtask_index in meta/subtasks.parquet names each frame's own step."""
    texts: list[str] = []
    for plan in plans:
        for k, text in enumerate((plan.steps or {}).get("subtask_names", [])):
            if text is None or (k < len(texts) and texts[k] != text):
                log.info("no meta/subtasks.parquet: episode %s step %d has %s", plan.episode.id, k + 1,
                         "no text" if text is None else f"text {text!r} where another episode has {texts[k]!r}")
                return None
            if k == len(texts):
                texts.append(text)
    if len(set(texts)) != len(texts):
        log.info("no meta/subtasks.parquet: a step text repeats (%s)", ", ".join(texts))
        return None
    return texts or None


def _write_indexed(path: Path, texts: list[str], index_name: str, column: str) -> None:
    """A table as LeRobot's write_tasks leaves it: a pandas frame whose index is the text, with its row number."""
    try:
        import pandas as pd  # lazy: pandas (comes with datasets, the [data] extra)
    except ImportError:
        raise LeRobotExportError("writing LeRobot metadata needs pandas: pip install -e '.[data]'") from None
    pd.DataFrame({column: np.arange(len(texts), dtype=np.int64)}, index=pd.Index(texts, name=index_name)).to_parquet(
        path)
