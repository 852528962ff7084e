"""A tiny LeRobot dataset written file by file as LeRobot lays it out (v3.0 or v2.1), whose frames say which
episode and frame they are: `frame_code` reads that back.

5 episodes (tasks A, B, A, A, B), 2 cameras, 10 fps, 64 x 48 frames, an `observation.state` and an `action` vector
per frame and one annotation column, `subtask_index`. v3.0 puts episodes 0-2 in data/video file-000 and 3-4 in
file-001 (and the episode metadata in two files too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ["pick up the red cube", "open the drawer"]
EPISODE_TASKS = [0, 1, 0, 0, 1]  # task index of each episode
LENGTHS = [12, 15, 16, 14, 20]
FILE_OF = [0, 0, 0, 1, 1]  # v3.0: the data / video file of each episode
CAMERAS = ["observation.images.top", "observation.images.wrist"]
FPS = 10
WIDTH, HEIGHT = 64, 48
BAND = 12  # the episode marker: a block in band number `episode`, BAND pixels wide


def frame_pixels(episode: int, frame: int, camera: str) -> np.ndarray:
    """Flat gray whose level encodes the frame (top: 10 f + 5, wrist: 245 - 10 f), with a block in the upper rows
    whose horizontal position encodes the episode."""
    level = 10 * frame + 5 if camera.endswith("top") else 245 - 10 * frame
    pixels = np.full((HEIGHT, WIDTH, 3), level, np.uint8)
    x = 2 + BAND * episode
    pixels[0:16, x:x + BAND] = 255 if level < 128 else 0
    return pixels


def frame_code(pixels: np.ndarray, camera: str) -> tuple[int, int]:
    """(episode, frame) read back from a decoded frame of `frame_pixels`; robust to lossy compression."""
    background = float(pixels[24:, :].mean())
    frame = round((background - 5) / 10) if camera.endswith("top") else round((245 - background) / 10)
    contrast = [abs(float(pixels[2:14, 2 + BAND * k + 2:2 + BAND * (k + 1) - 2].mean()) - background)
                for k in range(len(LENGTHS))]
    return int(np.argmax(contrast)), frame


def subtask(frame: int, length: int) -> int:
    """The annotation: 0, 1, 2 over the thirds of an episode."""
    return min(2, 3 * frame // length)


def write_lerobot(root: Path, version: str = "v3.0", codec: str = "libx264") -> Path:
    """Write the dataset under `root`; codec "libx264" (H.264) or "libsvtav1" (AV1) for videos, or "png" to store
    the cameras as image features (PNG bytes in the frame Parquet) instead. Returns `root`."""
    if version not in ("v3.0", "v2.1"):
        raise ValueError(f"version {version!r}: write v3.0 or v2.1")
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    images = codec == "png"
    starts = np.cumsum([0, *LENGTHS])
    rows = [_frame_rows(e, int(starts[e]), images) for e in range(len(LENGTHS))]
    if version == "v3.0":
        _write_v3(root, rows, codec, images)
    else:
        _write_v21(root, rows, codec, images)
    info = _info(version, images)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root


def _features(images: bool) -> dict:
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
    }
    for camera in CAMERAS:
        features[camera] = {"dtype": "image" if images else "video", "shape": [HEIGHT, WIDTH, 3],
                            "names": ["height", "width", "channels"]}
        if not images:
            features[camera]["info"] = {"video.height": HEIGHT, "video.width": WIDTH, "video.codec": "h264",
                                        "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": FPS,
                                        "video.channels": 3, "has_audio": False}
    features["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
    for name, dtype in [("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")]:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _info(version: str, images: bool) -> dict:
    info = {"codebase_version": version, "robot_type": "so101_follower", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": len(TASKS)}
    if version == "v3.0":
        info.update(chunks_size=1000, data_files_size_in_mb=100, video_files_size_in_mb=500, fps=FPS,
                    splits={"train": f"0:{len(LENGTHS)}"},
                    data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                    video_path=None if images else
                    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
    else:
        info.update(total_videos=0 if images else len(LENGTHS) * len(CAMERAS), total_chunks=1, chunks_size=1000,
                    fps=FPS, splits={"train": f"0:{len(LENGTHS)}"},
                    data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                    video_path=None if images else
                    "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
    info["features"] = _features(images)
    return info


def _frame_rows(episode: int, start: int, images: bool) -> dict[str, list]:
    length = LENGTHS[episode]
    rows: dict[str, list] = {
        "observation.state": [[float(episode), float(f), 0.5] for f in range(length)],
        "action": [[0.1 * f, -0.1 * f] for f in range(length)],
        "subtask_index": [subtask(f, length) for f in range(length)],
        "timestamp": [f / FPS for f in range(length)],
        "frame_index": list(range(length)),
        "episode_index": [episode] * length,
        "index": list(range(start, start + length)),
        "task_index": [EPISODE_TASKS[episode]] * length,
    }
    if images:
        for camera in CAMERAS:
            rows[camera] = [{"bytes": _png(frame_pixels(episode, f, camera)), "path": None} for f in range(length)]
    return rows


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_table(path: Path, columns: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"observation.state": pa.list_(pa.float32()), "action": pa.list_(pa.float32()),
             "timestamp": pa.float32(), "tasks": pa.list_(pa.string())}
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrays = {name: pa.array(values, type=image if name in CAMERAS else types.get(name))
              for name, values in columns.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)


def _concat(parts: list[dict[str, list]]) -> dict[str, list]:
    return {name: [v for part in parts for v in part[name]] for name in parts[0]}


def _write_v3(root: Path, rows: list[dict[str, list]], codec: str, images: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from progresslm.data.video import write_video

    episodes = []
    for file in sorted(set(FILE_OF)):
        members = [e for e in range(len(LENGTHS)) if FILE_OF[e] == file]
        _write_table(root / f"data/chunk-000/file-{file:03d}.parquet", _concat([rows[e] for e in members]))
        if not images:
            for camera in CAMERAS:  # the episodes of this file back to back in one video
                frames = [frame_pixels(e, f, camera) for e in members for f in range(LENGTHS[e])]
                write_video(root / f"videos/{camera}/chunk-000/file-{file:03d}.mp4", frames, FPS, codec)
        offset = 0.0
        for e in members:
            start = rows[e]["index"][0]
            row = {"episode_index": e, "tasks": [TASKS[EPISODE_TASKS[e]]], "length": LENGTHS[e],
                   "data/chunk_index": 0, "data/file_index": file,
                   "dataset_from_index": start, "dataset_to_index": start + LENGTHS[e]}
            if not images:
                for camera in CAMERAS:
                    row.update({f"videos/{camera}/chunk_index": 0, f"videos/{camera}/file_index": file,
                                f"videos/{camera}/from_timestamp": offset,
                                f"videos/{camera}/to_timestamp": offset + LENGTHS[e] / FPS})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": file,
                        "stats/observation.state/mean": [float(e), LENGTHS[e] / 2, 0.5],
                        "stats/observation.state/count": [LENGTHS[e]]})
            episodes.append(row)
            offset += LENGTHS[e] / FPS
    for file in sorted(set(FILE_OF)):
        members = [r for r in episodes if r["meta/episodes/file_index"] == file]
        _write_table(root / f"meta/episodes/chunk-000/file-{file:03d}.parquet",
                     {name: [r[name] for r in members] for name in members[0]})
    # meta/tasks.parquet as LeRobot's write_tasks leaves it: pandas frame, task text as the (unnamed) index
    pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
         "metadata": None}], "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    table = pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "__index_level_0__": TASKS})
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}),
                   root / "meta" / "tasks.parquet")


def _write_v21(root: Path, rows: list[dict[str, list]], codec: str, images: bool) -> None:
    from progresslm.data.video import write_video

    for e, columns in enumerate(rows):
        _write_table(root / f"data/chunk-000/episode_{e:06d}.parquet", columns)
        if not images:
            for camera in CAMERAS:
                frames = [frame_pixels(e, f, camera) for f in range(LENGTHS[e])]
                write_video(root / f"videos/chunk-000/{camera}/episode_{e:06d}.mp4", frames, FPS, codec)
    lines = [{"episode_index": e, "tasks": [TASKS[EPISODE_TASKS[e]]], "length": n} for e, n in enumerate(LENGTHS)]
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    tasks = [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    (root / "meta" / "tasks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in tasks))
    stats = [{"episode_index": e, "stats": {"observation.state": {"mean": [float(e), n / 2, 0.5]}}}
             for e, n in enumerate(LENGTHS)]
    (root / "meta" / "episodes_stats.jsonl").write_text("".join(json.dumps(line) + "\n" for line in stats))
