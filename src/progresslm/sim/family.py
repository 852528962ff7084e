"""The simulator-family contract: what a world (Meta-World, panda-gym, ...) supplies to `sim build` and
`sim export-videos`, and the registry that finds a family by name or by task. docs/sim_families.md says how to add one.

A family supplies its tasks (names unique across families: a goal, the task object's name, the key steps'
descriptions), its cameras (which are wide, which close or oblique), scripted expert rollouts (an `Episode` per seed:
the frames' states, key frames, and the world points a camera is framed on), and a per-process `Worker` that makes
`Scene`s: an episode's frames rendered from a camera with a scene style (randomisation) and an optional edit of the
task object (recolour, hide, ...), goal markers hidden. Sampling frames, labels, rows, splits, the dataset card and
the engines stay shared (`sim.samples`, `bench.sampling`, `builder/`).

This module imports nothing heavy: a family's module is imported only when the family is asked for (`get_family`),
so `progresslm --help` and a Meta-World-only install import no other simulator.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

# name -> "module:attribute" of the family object; lazily imported. Task names are unique across families.
FAMILIES: dict[str, str] = {
    "metaworld": "progresslm.sim.metaworld.family:FAMILY",
    "fetch": "progresslm.sim.fetch.family:FAMILY",
    "panda": "progresslm.sim.panda.family:FAMILY",
}
DEFAULT_FAMILY = "metaworld"
ROLLOUT_KINDS = ("expert", "failure", "random")  # what `Worker.rollout` can run (export-videos writes all three)


class UnknownFamilyError(ValueError):
    pass


class UnknownTaskError(UnknownFamilyError):
    """A task name no registered family has; the message lists the valid ones."""


@dataclass(frozen=True)
class TaskInfo:
    """What the shared builder needs to know of a task: its family, goal sentence, the task object's name (text
    naming another object replaces it) and the key steps' descriptions (a text demonstration)."""

    name: str
    family: str
    goal: str
    object_name: str
    step_descriptions: tuple[str, ...]


@dataclass(frozen=True)
class CameraSet:
    """A family's cameras: `wide` show the whole workspace; `close` are near or oblique views. A cross-view sample
    pairs a wide camera with a close one when the family has both, so the two views differ in scale and angle."""

    wide: tuple[str, ...]
    close: tuple[str, ...] = ()
    export: tuple[str, ...] = ()  # the default cameras of `sim export-videos`

    @property
    def all(self) -> tuple[str, ...]:
        return self.wide + self.close

    def kind(self, camera: str) -> str:
        return "close" if camera in self.close else "wide"


@runtime_checkable
class Episode(Protocol):
    """One rollout. `key_frames` holds frame 0 and the end frame of each key step found (all of them when `ok`);
    `n_frames` frames can be re-rendered from their stored states without simulating again."""

    task: str
    seed: int
    key_frames: list[int]
    failure: str | None

    @property
    def n_frames(self) -> int: ...

    @property
    def ok(self) -> bool: ...


@runtime_checkable
class Scene(Protocol):
    """An episode ready to render. `style` (set by the builder from `Worker.sample_style`) and `framing` (set by
    `frame`, or copied from another scene of the same unit) both have `to_dict()`; goal markers never show."""

    style: Any
    framing: Any

    def frame(self, episodes: Sequence[Episode]) -> None:
        """Aim (and zoom) the unit's cameras at the world region where `episodes` happen."""

    def render(self, frame: int, camera: str, edit: tuple[str, np.random.Generator] | None = None
               ) -> tuple[np.ndarray, dict]:
        """The `size x size x 3` uint8 pixels of `frame` from `camera`, and a record of the edit when editing (plain
        values; {} without an edit). `edit` is (kind, rng), kind one of the family's `edit_kinds`."""

    def close(self) -> None: ...


@runtime_checkable
class Worker(Protocol):
    """Per process: envs, renderers and GL contexts kept across units (closed with `close`)."""

    def rollout(self, task: str, seed: int, kind: str = "expert", stall_step: int | None = None) -> Episode | None:
        """Run `task` on the variant of `seed`. `expert`: the scripted expert, None unless it succeeds with every key
        step found. `failure`: the expert's motions with the task object never grasped or moved; `random`: a random
        policy (both return the episode, with `failure` saying why it is not a success). `stall_step` (k >= 1, with
        `expert`): the expert stops when key step k has ended and holds still for the rest of the episode."""

    def scene(self, episode: Episode, size: int, cameras: Sequence[str]) -> Scene: ...

    def sample_style(self, level: str, scene: Scene, rng: np.random.Generator) -> Any:
        """A scene look of randomisation `level` (`LEVELS`) for `scene`: distractors off the object's path."""

    def close(self) -> None: ...


@runtime_checkable
class Family(Protocol):
    """A simulator family. Module-level object named in `FAMILIES`; constructing it must import nothing heavy."""

    name: str
    extra: str  # the pip extra that installs it: pip install -e '.[EXTRA]'
    fps: float  # simulator steps per second of video at stride 1
    edit_kinds: tuple[str, ...]  # object edits for unanswerable samples, in the order they are tried
    absent_objects: tuple[str, ...]  # things no scene of the family holds (text naming another object)
    cameras: CameraSet

    def tasks(self) -> dict[str, TaskInfo]:
        """The family's tasks by name, in a stable order."""

    def problem(self) -> str | None:
        """Why the family cannot run here (a package missing: name the extra; no working offscreen GL), or None.
        Creates nothing; may run a child process."""

    def worker(self) -> Worker:
        """A new per-process worker (imports the simulator)."""


LEVELS = ("none", "default", "strong")  # scene randomisation levels every family interprets


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    """The family `name` (its module imported now); an unknown name lists the valid ones."""
    if name not in FAMILIES:
        raise UnknownFamilyError(f"unknown simulator family {name!r}; valid families: {', '.join(FAMILIES)}")
    module, attribute = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def all_tasks(families: Sequence[str] | None = None) -> dict[str, TaskInfo]:
    """Every task of `families` (default: all registered), by name. Raises if two families share a task name."""
    out: dict[str, TaskInfo] = {}
    for name in families or family_names():
        for task, info in get_family(name).tasks().items():
            if task in out:
                raise ValueError(f"task {task!r} is registered by both {out[task].family} and {name}")
            out[task] = info
    return out


def family_of(task: str, families: Sequence[str] | None = None) -> str:
    """The family that registers `task`; an unknown task lists the valid ones."""
    tasks = all_tasks(families)
    if task not in tasks:
        raise UnknownTaskError(f"unknown sim task {task!r}; valid tasks: {', '.join(tasks)}")
    return tasks[task].family


def progress_labels(key_frames: Sequence[int], n_frames: int) -> np.ndarray:
    """Progress in [0, 1] for every frame, linear in time between key-step ends (docs/protocol.md §1); keyframe i
    gets exactly i/T, frames after the last keyframe get 1.

    >>> progress_labels([0, 2, 4], 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    key = np.asarray(key_frames, dtype=float)
    steps = len(key) - 1
    return np.interp(np.arange(n_frames), key, np.arange(steps + 1) / steps)


# A `failure` rollout leaves the task object alone: one that moved more than STILL_M (metres) in all while the gripper
# was within TOUCH_M of it (the fingers reach a few centimetres beyond the grip point) was knocked, and a worker
# returns None for it, as for a failed expert (sim export-videos then tries the next seed). An object's own drift (a
# sliding puck), the gripper away, does not count.
STILL_M = 0.005
TOUCH_M = 0.10


def pushed(trace) -> float:
    """How far the task object moved on the frames the gripper was within TOUCH_M of it (metres); `trace` has the
    object's (`obj`) and the gripper's (`tcp`) positions per frame."""
    steps = np.linalg.norm(np.diff(trace.obj, axis=0), axis=1)
    near = np.linalg.norm(trace.tcp - trace.obj, axis=1)[1:] < TOUCH_M
    return float(steps[near].sum())


def package_problem(packages: Sequence[str], extra: str) -> str | None:
    """Which of a family's `packages` are not installed, with the pip line that installs its extra; None when all are."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed; pip install -e '.[{extra}]' in the progresslm clone"
    return None


def child_check(code: str, timeout: float = 120) -> str | None:
    """Run `code` in a child Python; its last line of stderr when it fails, else None."""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the offscreen GL check could not run ({error})"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"the offscreen GL check failed (exit code {done.returncode})"
    return None


def gl_problem() -> str | None:
    """Why MuJoCo cannot render offscreen here, or None. The check renders in a child process: a GL context in this
    one could clash with what it loads later (torch)."""
    return child_check("from progresslm.sim.mujoco_scene.render import check_gl; check_gl()")
