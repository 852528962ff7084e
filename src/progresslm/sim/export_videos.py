"""Simulated episodes written as a users'-data videos folder (`progresslm sim export-videos`): one sub-folder per
task with its `task.txt`, `<episode>.<camera>.mp4` per camera and a sidecar `<episode>.json`, the episode named
`epN` for a success and `<kind>-epN` otherwise. `data build` and `watch --source` read it as they read a robot's
recordings, which makes a round trip against `sim build`'s labels.

Kinds (`EXPORT_KINDS`), each through the family contract's `Worker.rollout` (`sim.family.ROLLOUT_KINDS`):
`success` (the scripted expert, every key step done), `failure` (the expert's motions with the task object never
grasped or moved), `random` (a random policy) and `stall` (the expert stopping when key step k has ended and holding
still; k drawn per episode from the seed, or `stall_step`).

The sidecar (docs/own-data.md, "Simulated videos"): `task` (the goal), `fps` (of the video), `steps` (the key steps
reached, each with its end in seconds of the video; all of them for a success, none for most failures),
`total_steps` (the task's key steps: readers label an episode that stops part way at the progress it reached, so a
stall holds k / T after it stalls), `kind`, `failure` (why it is not a success, or null), `key_steps` (every step of
the task, reached or not, with its video frame and end), `stall` (the step after which it stalls, and the video
frame and second the hold begins; null for other kinds), and `sim` (task, seed and kind of `Worker.rollout`, stall
step, simulator key frames, stride, level, cameras) to roll the episode out again."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from progresslm.data.video import write_video
from progresslm.io import write_text_atomic
from progresslm.sim.family import ROLLOUT_KINDS, family_of, get_family
from progresslm.sim.mujoco_scene.render import check_gl
from progresslm.sim.samples import TRIES

EXPORT_SEED_BASE = 9_000_000  # rollout seeds far from the builds' seeds (sim.samples.episode_seed)
# export kind -> the rollout kind of `Worker.rollout` it runs (a stall is the expert with a stall step)
EXPORT_KINDS = {"success": "expert", "failure": "failure", "random": "random", "stall": "expert"}


class ExportError(ValueError):
    """A bad export request (unknown kind, a stall step the task cannot take, a camera or kind a family lacks)."""


def parse_kinds(text: str) -> tuple[str, ...]:
    """`--kind`'s comma list as kinds, in the order given, each once.

    >>> parse_kinds("success, stall,success")
    ('success', 'stall')
    """
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in EXPORT_KINDS]
    if unknown or not kinds:
        raise ExportError(f"--kind {text!r}: {'unknown kind ' + repr(unknown[0]) if unknown else 'no kind'}; "
                          f"valid kinds: {', '.join(EXPORT_KINDS)} (a comma list, e.g. success,stall)")
    return kinds


@dataclass(frozen=True)
class Request:
    """One episode to write: its task (index `t` in the export), kind, number within the kind, and stall step."""

    task: str
    t: int
    kind: str
    number: int
    stall_step: int | None = None

    @property
    def name(self) -> str:
        """`epN` for a success (the name exports have always had), `<kind>-epN` for the other kinds."""
        return f"ep{self.number}" if self.kind == "success" else f"{self.kind}-ep{self.number}"


def plan_requests(tasks: list[str], episodes: int, kinds: tuple[str, ...], seed: int,
                  stall_step: int | None) -> list[Request]:
    """Every episode of the export, checked before anything rolls out: unknown or repeated tasks, unknown kinds, a
    kind a task's family does not run, a stall step outside 1..T-1 for a task of T key steps."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ExportError(f"--episodes {episodes!r}: give at least 1 episode per task and kind")
    if not tasks:
        raise ExportError("--tasks: give at least one task (`progresslm sim tasks` lists them)")
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise ExportError(f"--tasks: {repeated[0]} is given twice; each task's episodes go to one folder")
    for kind in kinds:
        if kind not in EXPORT_KINDS:
            raise ExportError(f"--kind: unknown kind {kind!r}; valid kinds: {', '.join(EXPORT_KINDS)}")
    if not kinds:
        raise ExportError(f"--kind: no kind; valid kinds: {', '.join(EXPORT_KINDS)}")
    if stall_step is not None and "stall" not in kinds:
        raise ExportError(f"--stall-step {stall_step}: only stalls have a stall step; add stall to --kind")
    requests = []
    for t, task in enumerate(tasks):
        family = get_family(family_of(task))  # an unknown task: UnknownTaskError listing the valid ones
        runs = getattr(family, "rollout_kinds", ROLLOUT_KINDS)  # a family may run fewer kinds than the contract's
        steps = len(family.tasks()[task].step_descriptions)
        for kind in kinds:
            if EXPORT_KINDS[kind] not in runs:
                raise ExportError(f"--kind {kind}: the {family.name} family cannot roll out {EXPORT_KINDS[kind]!r} "
                                  f"episodes (it runs {', '.join(runs)}); drop {kind} for {task}")
            if kind == "stall" and steps < 2:
                raise ExportError(f"--kind stall: {task} has {steps} key step, so it cannot stall part way")
            if kind == "stall" and stall_step is not None and not 1 <= stall_step < steps:
                raise ExportError(f"--stall-step {stall_step}: {task} has {steps} key steps, so a stall step must be "
                                  f"in 1..{steps - 1} (the expert holds after that step ends)")
            for number in range(episodes):
                k = None
                if kind == "stall":  # drawn per episode, seeded, unless given
                    k = stall_step or int(np.random.default_rng([EXPORT_SEED_BASE, seed, t, number]).integers(1, steps))
                requests.append(Request(task, t, kind, number, k))
    return requests


def reached_frames(episode, request: Request) -> list[int]:
    """The simulator frames at which the episode's reached key steps end. A stall's stop at its stall step: nothing
    counts as done while the arm holds, whatever a detector reads then."""
    reached = list(episode.key_frames[1:])
    return reached[:request.stall_step] if request.kind == "stall" else reached


def video_frames(sim_frames: list[int], stride: int, n_video: int) -> list[int]:
    """Video frame of each simulator frame: the first video frame (simulator frame i * stride) at or after it.

    >>> video_frames([2, 9, 44], 4, 12), video_frames([51, 82], 1, 92)
    ([1, 3, 11], [51, 82])
    """
    return [min(math.ceil(f / stride), n_video - 1) for f in sim_frames]


def accepted(episode, request: Request, stride: int = 1) -> bool:
    """Whether a rollout is the episode `request` asks for: a success with every key step; a failure or random
    episode that did not succeed; a stall that reached its stall step (and so stalled there). At `stride`, each
    reached key step must also end on its own video frame after the first (readers place steps on frames)."""
    if episode is None:
        return False
    if request.kind == "success":
        ok = bool(episode.ok)
    elif request.kind == "stall":
        ok = not episode.ok and len(episode.key_frames) > request.stall_step
    else:
        ok = not episode.ok
    if not ok:
        return False
    frames = video_frames(reached_frames(episode, request), stride, len(range(0, episode.n_frames, stride)))
    return all(b > a for a, b in zip([0, *frames], frames))


def sidecar(episode, request: Request, run_seed: int, goal: str, descriptions: tuple[str, ...], fps: float,
            stride: int, n_video: int, level: str, cameras: tuple[str, ...]) -> dict:
    """The episode's sidecar (the module docstring lists its fields). Times are seconds of the (strided) video."""
    rate = fps / stride
    reached = video_frames(reached_frames(episode, request), stride, n_video)
    key_steps = []
    for number, text in enumerate(descriptions, start=1):
        done = number <= len(reached)
        frame = reached[number - 1] if done else None
        key_steps.append({"step": number, "text": text, "reached": done, "frame": frame,
                          "end": round(frame / rate, 6) if done else None})
    stall = None
    if request.kind == "stall":
        frame = reached[request.stall_step - 1]
        stall = {"after_step": request.stall_step, "frame": frame, "time": round(frame / rate, 6)}
    return {
        "task": goal,
        "fps": rate,
        "steps": [{"end": s["end"], "text": s["text"]} for s in key_steps if s["reached"]],
        "total_steps": len(descriptions),
        "kind": request.kind,
        "failure": None if request.kind == "success" else episode.failure,
        "key_steps": key_steps,
        "stall": stall,
        "sim": {"task": request.task, "seed": run_seed, "rollout": EXPORT_KINDS[request.kind],
                "stall_step": request.stall_step, "episode_seed": int(episode.seed),
                "key_frames": [int(f) for f in episode.key_frames], "frames": int(episode.n_frames),
                "stride": stride, "level": level, "cameras": list(cameras)},
    }


def export_videos(tasks: list[str], episodes: int, out: Path, cameras: tuple[str, ...] | None = None,
                  size: int = 128, stride: int = 1, seed: int = 0, level: str = "default",
                  codec: str = "libx264", kinds: tuple[str, ...] = ("success",),
                  stall_step: int | None = None) -> list[Path]:
    """Roll out `episodes` episodes of each task and kind (`EXPORT_KINDS`) and write their videos and sidecars;
    returns the sidecars. `cameras`: every task's (default: each family's export cameras); `stall_step`: every
    stall's step (default: drawn per episode from `seed`). Bad input raises ExportError before anything is written.

    Seeds: the episodes of one task and kind try seeds one after another from the task's first seed (a seed whose
    rollout is not of the kind is skipped), TRIES per episode at most, as successes always have; a stall or a
    failure of the expert's motions therefore replays the expert of a success's seed when that seed works for both."""
    # Before anything imports MuJoCo: mujoco picks its GL backend once, at import, and without MUJOCO_GL on a machine
    # with no display it would try GLFW. check_gl sets the EGL default, as `sim build` does, and raises RenderError
    # saying what to install when offscreen GL does not work.
    check_gl()
    tasks = list(tasks)
    requests = plan_requests(tasks, episodes, tuple(kinds), seed, stall_step)
    if not isinstance(stride, int) or stride < 1:
        raise ExportError(f"--stride {stride!r}: give a whole number of simulator steps >= 1")
    if size < 16 or size % 2:
        raise ExportError(f"--size {size}: give an even number of pixels >= 16 (video encoders need even sides)")
    families = {task: get_family(family_of(task)) for task in tasks}
    views = {}
    for task, family in families.items():
        views[task] = tuple(cameras) if cameras else family.cameras.export
        known = tuple(dict.fromkeys(family.cameras.all + family.cameras.export))
        missing = [c for c in views[task] if c not in known]
        if missing:
            raise ExportError(f"--cameras: the {family.name} family has no camera {missing[0]!r} (task {task}); "
                              f"its cameras: {', '.join(known)}")
    written = []
    workers: dict = {}
    tried: dict[tuple[str, str], int] = {}  # seeds tried so far per task and kind
    try:
        for request in requests:
            family = families[request.task]
            # A MuJoCo family's worker picks EGL on a headless machine, and raises RenderError saying what to install
            # when offscreen GL does not work.
            worker = workers.get(family.name) or workers.setdefault(family.name, family.worker())
            key = (request.task, request.kind)
            first = EXPORT_SEED_BASE + seed * 10_000 + request.t * 100
            episode, run_seed, tried[key] = _roll_out(worker, request, first, tried.get(key, 0), TRIES * episodes,
                                                      stride)
            written.append(_write(worker, family, episode, run_seed, request, out, views[request.task], size,
                                  stride, level, codec))
    finally:
        for worker in workers.values():
            worker.close()
    return written


def _roll_out(worker, request: Request, first: int, attempt: int, budget: int, stride: int):
    """(episode, its seed, seeds tried) of the first seed from `first + attempt` whose rollout is `request`'s kind."""
    while attempt < budget:
        run_seed = first + attempt
        attempt += 1
        episode = worker.rollout(request.task, run_seed, EXPORT_KINDS[request.kind], request.stall_step)
        if accepted(episode, request, stride):
            return episode, run_seed, attempt
    what = f"stall after step {request.stall_step}" if request.kind == "stall" else f"{request.kind} episode"
    hint = f" with key steps on distinct frames at --stride {stride} (try a smaller stride)" if stride > 1 else ""
    raise RuntimeError(f"{request.task}: no {what}{hint} on {budget} seeds from {first} (episode {request.name})")


def _write(worker, family, episode, run_seed: int, request: Request, out: Path, cameras: tuple[str, ...], size: int,
           stride: int, level: str, codec: str) -> Path:
    """Render one episode's videos (one per camera) and write its sidecar; returns the sidecar."""
    spec = family.tasks()[request.task]
    folder = out / request.task
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "task.txt", spec.goal + "\n")
    scene = worker.scene(episode, size, cameras)
    try:
        scene.frame([episode])
        scene.style = worker.sample_style(level, scene, np.random.default_rng(run_seed))
        frames = list(range(0, episode.n_frames, stride))
        for camera in cameras:
            pixels = [scene.render(f, camera)[0] for f in frames]
            write_video(folder / f"{request.name}.{camera}.mp4", pixels, family.fps / stride, codec)
    finally:
        scene.close()
    info = sidecar(episode, request, run_seed, spec.goal, tuple(spec.step_descriptions), family.fps, stride,
                   len(frames), level, cameras)
    path = folder / f"{request.name}.json"
    write_text_atomic(path, json.dumps(info, indent=1, allow_nan=False) + "\n")
    return path
