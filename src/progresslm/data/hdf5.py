"""Episodes from an HDF5 file in the robomimic layout (robomimic's `docs/datasets/overview.md`, and what its
`dataset_states_to_obs.py` writes): `data/demo_N/obs/<camera>_image` arrays of N x H x W x 3 uint8 frames,
`data/demo_N/actions`, `data.attrs["env_args"]` (JSON: `env_name`, `env_kwargs.control_freq`, the camera names), and
`mask/<filter key>` (a list of demo names, e.g. "train", "valid"). Optional per-demo key steps in
`data/demo_N.attrs["keysteps"]` (JSON list of {"end": seconds, "text": ...}).

- fps: `--fps`, else `env_kwargs.control_freq`, else robosuite's default of 20 with a warning.
- task: `--task`, else a language instruction the file holds (`data.attrs["problem_info"]`, as LIBERO writes), else
  the env name ("Lift") with a line pointing to `--task`.
- cameras: named as robomimic names them (`agentview` or `agentview_image`, both accepted); third-person cameras
  first, wrist cameras (`*eye_in_hand*`, `*wrist*`) after, so a default of "the first camera" is the scene view."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from progresslm.data.episodes import Cameras, Episode, EpisodeSourceError, check_fps, is_wrist, parse_keysteps

log = logging.getLogger(__name__)

HDF5_FPS = 20.0  # robosuite's default control_freq, for files whose env_args state none
NEXT_STEP = ("robomimic's dataset_states_to_obs makes them: python robomimic/scripts/dataset_states_to_obs.py "
             "--dataset demo.hdf5 --output_name image.hdf5 --done_mode 2 --camera_names agentview robot0_eye_in_hand "
             "--camera_height 84 --camera_width 84")


def _demo_key(name: str) -> tuple:
    head, _, number = name.rpartition("_")
    return (head, int(number)) if number.isdigit() else (name, -1)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json_attr(group, key: str, where: str) -> dict:
    """A JSON-object attribute, {} when absent; a garbled one is an error naming it."""
    if key not in group.attrs:
        return {}
    try:
        value = json.loads(_text(group.attrs[key]))
    except (json.JSONDecodeError, TypeError):
        raise EpisodeSourceError(f"{where}: attrs[{key!r}] is not JSON") from None
    if not isinstance(value, dict):
        raise EpisodeSourceError(f"{where}: attrs[{key!r}] is not a JSON object")
    return value


def _cameras(obs) -> Cameras:
    """Image observations named as robomimic names the camera (`agentview_image` -> `agentview`), scene cameras first;
    the observation keys stay accepted as aliases."""
    keys = sorted(k for k, v in obs.items()
                  if getattr(v, "ndim", 0) == 4 and v.shape[-1] == 3 and v.dtype.kind == "u")  # fmt: skip
    names = {k.removesuffix("_image") if k.endswith("_image") and k != "_image" else k: k for k in keys}
    if len(names) != len(keys):  # both "x" and "x_image": keep the keys as they are
        names = {k: k for k in keys}
    order = sorted(names, key=lambda n: (is_wrist(n), n))
    return Cameras(order, {key: name for name, key in names.items() if key != name}, keys=names)


def _fps(given: float | None, env_args: dict, path: Path) -> float:
    if given is not None:
        return check_fps(given, "--fps")
    kwargs = env_args.get("env_kwargs")
    rate = kwargs.get("control_freq") if isinstance(kwargs, dict) else None
    if rate is not None:
        return check_fps(rate.item() if hasattr(rate, "item") else rate,
                         f"{path}: data.attrs['env_args'] env_kwargs.control_freq")
    log.warning("%s: env_args states no control_freq; frames are taken as %g per second (robosuite's default); "
                "pass --fps if the data was recorded at another rate", path, HDF5_FPS)
    return HDF5_FPS


def _task(given: str | None, data, env_args: dict, path: Path) -> tuple[str, bool]:
    """The task text, and whether it is a stand-in (the env or file name) the user should be told about."""
    if given:
        return given, False
    problem = _json_attr(data, "problem_info", f"{path}: data")
    instruction = problem.get("language_instruction")
    if isinstance(instruction, str) and instruction.strip():
        return instruction.strip(), False
    name = env_args.get("env_name")
    return (str(name) if name else path.stem.replace("_", " ")), True


def _demos(handle, data, path: Path, filter_key: str | None) -> list[str]:
    names = sorted(data.keys(), key=_demo_key)
    if filter_key is None:
        return names
    masks = handle.get("mask")
    available = sorted(masks.keys()) if masks is not None else []
    if filter_key not in available:
        raise EpisodeSourceError(f"{path}: no filter key {filter_key!r} (mask/{filter_key}); the file has "
                                 f"{', '.join(available) if available else 'no mask group'}")
    wanted = [_text(v) for v in handle["mask"][filter_key][()]]
    unknown = [w for w in wanted if w not in data]
    if unknown:
        raise EpisodeSourceError(f"{path}: mask/{filter_key} names {unknown[0]}, which data/ lacks")
    return sorted(wanted, key=_demo_key)


def open_hdf5(path: Path, task: str | None = None, fps: float | None = None, filter_key: str | None = None,
              **ignored) -> list[Episode]:
    """The demos of a robomimic HDF5 file (those of `mask/<filter_key>` when given) as episodes."""
    try:
        import h5py  # lazy: h5py (the [data] extra)
    except ImportError:
        raise EpisodeSourceError("reading HDF5 needs h5py: pip install -e '.[data]' (in the progresslm clone)") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise EpisodeSourceError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        if "data" not in handle or not isinstance(handle["data"], h5py.Group):
            raise EpisodeSourceError(f"{path}: no group 'data' (the robomimic layout is data/demo_N/obs/<camera>)")
        data = handle["data"]
        env_args = _json_attr(data, "env_args", f"{path}: data")
        rate = _fps(fps, env_args, path)
        task, stand_in = _task(task, data, env_args, path)
        episodes = []
        for name in _demos(handle, data, path, filter_key):
            demo = data[name]
            where = f"{path}: data/{name}"
            if not isinstance(demo, h5py.Group):
                raise EpisodeSourceError(f"{where} is not a demo group")
            if "obs" not in demo:
                raise EpisodeSourceError(f"{where} has no 'obs' group: a states-only file (robomimic's demo.hdf5). "
                                         f"{NEXT_STEP}")
            cameras = _cameras(demo["obs"])
            if not cameras:
                raise EpisodeSourceError(f"{where}/obs holds no image arrays (N x H x W x 3 uint8): a states-only "
                                         f"file? {NEXT_STEP}")
            lengths = {c: int(demo["obs"][cameras.key(c)].shape[0]) for c in cameras}
            length = lengths[cameras[0]]
            if "actions" in demo and getattr(demo["actions"], "shape", None):
                length = int(demo["actions"].shape[0])
            wrong = {c: n for c, n in lengths.items() if n != length}
            if wrong:
                camera, n = next(iter(wrong.items()))
                raise EpisodeSourceError(f"{where}/obs/{cameras.key(camera)} holds {n} frames but the demo has "
                                         f"{length} (its actions); every camera needs one frame per step")
            keysteps = None
            if "keysteps" in demo.attrs:
                try:
                    steps = json.loads(_text(demo.attrs["keysteps"]))
                except json.JSONDecodeError:
                    raise EpisodeSourceError(f"{where}: attrs['keysteps'] is not JSON") from None
                keysteps = parse_keysteps(steps, Path(f"{path}:data/{name}"))

            def reader(camera, indices, name=name, cameras=cameras):
                with h5py.File(path, "r") as again:
                    frames = again["data"][name]["obs"][cameras.key(camera)]
                    unique = sorted(set(indices))
                    block = frames[unique]  # h5py needs increasing indices
                    where = {i: k for k, i in enumerate(unique)}
                    return [np.asarray(block[where[i]]) for i in indices]

            episodes.append(Episode("hdf5", name, len(episodes), task, cameras, rate, length, reader, keysteps))
    if not episodes:
        raise EpisodeSourceError(f"{path}: data holds no demos" + (f" in mask/{filter_key}" if filter_key else ""))
    if stand_in:
        log.warning("%s holds no task text; the %s %r is used as the goal. Pass --task with what the robot does, "
                    "e.g. --task 'lift the cube'", path, "env name" if env_args.get("env_name") else "file name", task)
    return episodes
