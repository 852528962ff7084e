"""Writers of small users'-data sources for tests: a videos folder, a frames folder and a robomimic HDF5 file, two
tasks each. A frame's content encodes its episode and index: a bar whose left edge moves with the frame index
(x = 4 + frame), brighter on the second camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ("pick_cup", "open_drawer")
LENGTHS = (30, 36, 40)  # frames of episodes 0, 1, 2 of each task
FPS = 10.0


def frame(task: int, episode: int, index: int, camera: int = 0) -> np.ndarray:
    pixels = np.full((48, 64, 3), 20 + 60 * camera, np.uint8)
    pixels[8:40, 4 + index : 12 + index, task] = 250
    pixels[:4, :, 2] = 40 * episode
    return pixels


def bar_position(pixels: np.ndarray, task: int) -> int:
    """The frame index read back from a frame's pixels (left edge of the bar)."""
    column = pixels[8:40, :, task].astype(int).mean(axis=0)
    return int(np.argmax(column > 150)) - 4


def steps(length: int) -> list[dict]:
    """Three annotated key steps: ends at 1/3, 2/3 and the last frame."""
    ends = [round(length / 3), round(2 * length / 3), length - 1]
    return [{"end": e / FPS, "text": text} for e, text in zip(ends, ("reach", "grasp", "lift"))]


def write_videos(root: Path, cameras: tuple[str, ...] = ("top", "wrist"), annotate: bool = True) -> Path:
    from progresslm.data.video import write_video

    for t, task in enumerate(TASKS):
        for e, length in enumerate(LENGTHS):
            for c, camera in enumerate(cameras):
                name = f"ep{e}.{camera}.mp4" if len(cameras) > 1 else f"ep{e}.mp4"
                write_video(root / task / name, [frame(t, e, i, c) for i in range(length)], FPS)
            if annotate:
                (root / task / f"ep{e}.json").write_text(json.dumps({"steps": steps(length)}))
    return root


def write_frames(root: Path) -> Path:
    from PIL import Image

    for t, task in enumerate(TASKS):
        for e, length in enumerate(LENGTHS[:2]):
            for c, camera in enumerate(("left", "right")):
                folder = root / task / f"ep{e}" / camera
                folder.mkdir(parents=True)
                for i in range(length):
                    Image.fromarray(frame(t, e, i, c)).save(folder / f"f{i}.png")
    return root


def write_hdf5(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        data = handle.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift"})
        for e, length in enumerate(LENGTHS):
            demo = data.create_group(f"demo_{e}")
            demo.attrs["num_samples"] = length
            if e == 0:
                demo.attrs["keysteps"] = json.dumps(steps(length))
            obs = demo.create_group("obs")
            obs["agentview_image"] = np.stack([frame(0, e, i, 0) for i in range(length)])
            obs["robot0_eye_in_hand_image"] = np.stack([frame(0, e, i, 1) for i in range(length)])
            obs["robot0_eef_pos"] = np.zeros((length, 3), np.float32)
    return path
