"""Episodes from an HDF5 file in the robomimic layout: `data/demo_N/obs/<camera>` arrays of N x H x W x 3 uint8
frames, the task from `data.attrs["env_args"]` (its `env_name`) unless `task` is given, optional per-demo key steps
in `data/demo_N.attrs["keysteps"]` (JSON list of {"end": seconds, "text": ...})."""

from __future__ import annotations

import json
from pathlib import Path

from progresslm.data.episodes import Episode, EpisodeSourceError, parse_keysteps

HDF5_FPS = 20.0  # robomimic's control rate


def _demo_key(name: str) -> tuple:
    head, _, number = name.rpartition("_")
    return (head, int(number)) if number.isdigit() else (name, -1)


def open_hdf5(path: Path, task: str | None = None, fps: float | None = None, **ignored) -> list[Episode]:
    try:
        import h5py
    except ImportError:
        raise EpisodeSourceError("reading HDF5 needs h5py: pip install -e '.[data]' (in the progresslm clone)") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise EpisodeSourceError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        if "data" not in handle:
            raise EpisodeSourceError(f"{path}: no group 'data' (the robomimic layout is data/demo_N/obs/<camera>)")
        data = handle["data"]
        if task is None:
            try:
                task = json.loads(data.attrs.get("env_args", "{}")).get("env_name")
            except (json.JSONDecodeError, TypeError):
                task = None
        task = task or path.stem.replace("_", " ")
        episodes = []
        for name in sorted(data.keys(), key=_demo_key):
            demo = data[name]
            if "obs" not in demo:
                raise EpisodeSourceError(f"{path}: data/{name} has no 'obs' group")
            cameras = tuple(sorted(k for k, v in demo["obs"].items()
                                   if getattr(v, "ndim", 0) == 4 and v.shape[-1] == 3 and v.dtype.kind == "u"))
            if not cameras:
                raise EpisodeSourceError(f"{path}: data/{name}/obs holds no image arrays (N x H x W x 3 uint8)")
            length = int(demo["obs"][cameras[0]].shape[0])
            keysteps = None
            if "keysteps" in demo.attrs:
                keysteps = parse_keysteps(json.loads(demo.attrs["keysteps"]), Path(f"{path}:data/{name}"))

            def reader(camera, indices, name=name):
                import numpy as np

                with h5py.File(path, "r") as again:
                    frames = again["data"][name]["obs"][camera]
                    unique = sorted(set(indices))
                    block = frames[unique]  # h5py needs increasing indices
                    where = {i: k for k, i in enumerate(unique)}
                    return [np.asarray(block[where[i]]) for i in indices]

            episodes.append(Episode("hdf5", name, len(episodes), task, cameras, float(fps or HDF5_FPS), length,
                                    reader, keysteps))
    if not episodes:
        raise EpisodeSourceError(f"{path}: data holds no demos")
    return episodes
