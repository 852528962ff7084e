"""Episodes from folders: one video per episode (`videos:DIR`) or one folder of frames per episode (`frames:DIR`).

Layout (the same for both kinds)::

    DIR/<task folder>/<episode>.mp4                 one camera ("video")
    DIR/<task folder>/<episode>.<camera>.mp4        several cameras of one episode
    DIR/<task folder>/<episode>/*.png               frames, natural name order (one camera, "frames")
    DIR/<task folder>/<episode>/<camera>/*.png      frames of several cameras
    DIR/<task folder>/task.txt                      the task text (default: the folder name, "_" read as " ")
    DIR/<task folder>/<episode>.json                optional: {"task": ..., "fps": ..., "steps": [{"end": s, "text": ...}],
                                                               "total_steps": T}
    DIR/<task folder>/<episode>.steps.csv           optional: key steps as rows "end,text" (end in seconds)

Videos or episode folders directly in DIR belong to one task named by DIR (or DIR/task.txt). Key-step `end` times are
seconds from the episode's first frame. `total_steps` (optional, JSON sidecar only) is the task's number of key steps
when the episode reached fewer (`steps` lists the reached ones, [] for none): a stalled or failed episode, whose
progress holds at reached / total_steps after its last reached step (`sim export-videos` writes such sidecars)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from progresslm.data.episodes import (
    VIDEO_SUFFIXES,
    Episode,
    EpisodeSourceError,
    check_fps,
    parse_keysteps,
    text_name,
)
from progresslm.data.video import count_frames, decode
from progresslm.images import IMAGE_SUFFIXES, ImageReadError, list_images, natural_key, read_frame

log = logging.getLogger(__name__)

FRAMES_FPS = 10.0  # frame rate assumed for frame folders that state none


def _task_folders(root: Path) -> list[Path]:
    """DIR itself when it holds episodes directly, else its sub-folders that do, in natural order."""
    if not root.is_dir():
        raise EpisodeSourceError(f"{root} is not a folder")
    subs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    direct = any(p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES for p in root.iterdir())
    return [root] if direct or not subs else subs


def _task_text(folder: Path) -> str:
    sidecar = folder / "task.txt"
    if sidecar.is_file():
        try:
            text = sidecar.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as err:
            raise EpisodeSourceError(f"{sidecar}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if not text:
            raise EpisodeSourceError(f"{sidecar} is empty; write the task text in it")
        return text
    name = text_name(folder.name)
    if name != folder.name:
        log.warning("%s: the folder name is not valid UTF-8, so its task text shows those bytes as \\xNN (%r); "
                    "write the task text in task.txt in it", text_name(str(folder)), name.replace("_", " ").strip())
    return name.replace("_", " ").strip()


def _sidecar(folder: Path, stem: str) -> dict:
    """The episode's optional JSON and steps-CSV sidecars, checked."""
    info: dict = {}
    path = folder / f"{stem}.json"
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EpisodeSourceError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(info, dict):
            raise EpisodeSourceError(f"{path}: expected a JSON object with task, fps or steps")
        if "fps" in info and info["fps"] is not None:
            info["fps"] = check_fps(info["fps"], f"{path}: fps")
        if info.get("task") is not None and not (isinstance(info["task"], str) and info["task"].strip()):
            raise EpisodeSourceError(f"{path}: task is {info['task']!r}, not a task text")
    total = info.get("total_steps")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 1):
        raise EpisodeSourceError(f"{path}: total_steps is {total!r}, not a number of key steps (a whole number >= 1)")
    if total is not None and info.get("steps") is None:
        raise EpisodeSourceError(f"{path}: total_steps needs steps, the key steps reached ([] for none)")
    steps = info.get("steps")
    csv_path = folder / f"{stem}.steps.csv"
    if csv_path.is_file():
        try:
            with csv_path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except (UnicodeDecodeError, csv.Error) as err:
            raise EpisodeSourceError(f"{csv_path}: not a CSV of end,text rows ({err})") from None
        if rows and rows[0] and rows[0][0].strip().lower() == "end":
            rows = rows[1:]
        steps = [{"end": r[0], "text": r[1] if len(r) > 1 else None} for r in rows if r and r[0].strip()]
        path = csv_path
    if steps is not None:
        # an episode that reached none of its task's key steps (total_steps says how many it has) has no key steps
        info["keysteps"] = [] if steps == [] and total is not None else parse_keysteps(steps, path)
        if total is not None and len(info["keysteps"]) > total:
            raise EpisodeSourceError(f"{path}: {len(info['keysteps'])} steps, more than total_steps {total}")
    return info


def _camera_of(stem: str) -> tuple[str, str]:
    """(episode stem, camera) of a video file stem: `ep01.top` -> ("ep01", "top"), `ep01` -> ("ep01", "video")."""
    stem = text_name(stem)  # names as text: a name that is not UTF-8 keeps its bytes as \\xNN
    episode, dot, camera = stem.rpartition(".")
    return (episode, camera) if dot and episode else (stem, "video")


def _video_episode(files: dict[str, Path], name: str, index: int, task: str, info: dict) -> Episode:
    """One episode from its cameras' video files; frames are read by decoding at i / fps from the first frame."""
    lengths = {camera: count_frames(path) for camera, path in files.items()}
    fps = float(info.get("fps") or next(iter(lengths.values()))[0])
    length = min(n for _, n, _ in lengths.values())

    def reader(camera, indices):
        start = lengths[camera][2]
        wanted = [start + i / fps for i in indices]
        order = sorted(range(len(wanted)), key=wanted.__getitem__)
        frames = [image for _, image in decode(files[camera], times=[wanted[i] for i in order])]
        out = [None] * len(wanted)
        for slot, image in zip(order, frames):
            out[slot] = image
        return out

    return Episode("videos", name, index, task, tuple(sorted(files)), fps, length, reader, info.get("keysteps"),
                   total_steps=info.get("total_steps"))


def video_episode(path: Path) -> Episode:
    """A single video file as an episode (its sidecars beside it are read; the task is its folder's)."""
    if not path.is_file():
        raise EpisodeSourceError(f"{path}: no such video file")
    stem, camera = _camera_of(path.stem)
    info = _sidecar(path.parent, stem)
    return _video_episode({camera: path}, stem, 0, str(info.get("task") or _task_text(path.parent)), info)


def open_videos(root: Path, **ignored) -> list[Episode]:
    """One episode per video (or per group of `<episode>.<camera>` videos) under `root`."""
    episodes: list[Episode] = []
    for folder in _task_folders(root):
        groups: dict[str, dict[str, Path]] = {}
        for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
            if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                stem, camera = _camera_of(path.stem)
                groups.setdefault(stem, {})[camera] = path
        task = _task_text(folder)
        for stem, files in groups.items():
            info = _sidecar(folder, stem)
            name = stem if folder == root else f"{text_name(folder.name)}/{stem}"
            episodes.append(_video_episode(files, name, len(episodes), str(info.get("task") or task), info))
    if not episodes:
        raise EpisodeSourceError(f"{root}: no videos ({', '.join(VIDEO_SUFFIXES)}) found in it or its sub-folders")
    return episodes


def open_frames(root: Path, fps: float | None = None, **ignored) -> list[Episode]:
    """One episode per folder of frames under `root` (camera sub-folders for several cameras)."""
    episodes: list[Episode] = []
    folders = [root] if any(p.is_dir() and list_images(p) for p in root.iterdir()) else _task_folders(root)
    for folder in folders:
        task = _task_text(folder)
        for episode_dir in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
            own = list_images(episode_dir)
            cameras = {"frames": own} if own else {
                text_name(p.name): list_images(p) for p in sorted(episode_dir.iterdir()) if p.is_dir() and list_images(p)
            }
            if not cameras:
                continue
            counts = {camera: len(files) for camera, files in cameras.items()}
            if len(set(counts.values())) > 1:
                raise EpisodeSourceError(f"{episode_dir}: cameras hold different numbers of frames ({counts})")
            info = _sidecar(folder, episode_dir.name)
            rate = info.get("fps") or (check_fps(fps, "--fps") if fps is not None else FRAMES_FPS)

            name = text_name(episode_dir.name if folder == root else f"{folder.name}/{episode_dir.name}")

            def reader(camera, indices, cameras=cameras, name=name):
                frames = []
                for i in indices:
                    try:
                        frames.append(read_frame(cameras[camera][i]))
                    except ImageReadError as err:
                        raise EpisodeSourceError(f"episode {name} camera {camera} frame {i}: {err}") from None
                return frames

            episodes.append(Episode("frames", name, len(episodes), str(info.get("task") or task), tuple(cameras),
                                    rate, next(iter(counts.values())), reader, info.get("keysteps"),
                                    total_steps=info.get("total_steps")))
    if not episodes:
        raise EpisodeSourceError(f"{root}: no episode folders of frames ({', '.join(IMAGE_SUFFIXES)}) found")
    return episodes
