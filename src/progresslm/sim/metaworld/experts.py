"""Meta-World experts for online use: a demonstration rendered from the scripted expert (`demo_from_expert`), the
goal sentence of a Meta-World env, and a camera that renders an env's frames as the demonstration was framed
(`MetaWorldCamera`), for `ProgressReward` (docs/reward.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from progresslm.sim.metaworld.family import region_points
from progresslm.sim.metaworld.rollout import make_env, restore, rollout
from progresslm.sim.metaworld.tasks import TASKS, get_task
from progresslm.sim.mujoco_scene.framing import apply_framing, frame_cameras
from progresslm.sim.mujoco_scene.render import FrameRenderer, check_gl

if TYPE_CHECKING:
    import gymnasium


class ExpertError(ValueError):
    """An expert demonstration that cannot be made; the message says which and what to try."""


def meta_world_goal(env: gymnasium.Env) -> str | None:
    """The registered goal sentence of a Meta-World env's task, or None for other envs."""
    kind = type(env.unwrapped)
    if not kind.__module__.startswith("metaworld."):
        return None
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # lazy: the sim extra; imports mujoco, so only after check_gl


    names = [name for name, cls in ALL_V3_ENVIRONMENTS.items() if cls is kind and name in TASKS]
    return TASKS[names[0]].goal if names else None


# --------------------------------------------------------------------------- Meta-World helpers


@dataclass(frozen=True)
class ExpertDemo:
    """The keyframes of a scripted expert episode: frame 0 and the end of each key step."""

    task: str
    seed: int
    goal: str
    keyframes: tuple[np.ndarray, ...]
    frame_indices: tuple[int, ...]  # env steps of the keyframes in the episode
    steps: tuple[str, ...]  # the key step descriptions (a text demonstration of the same task)
    framing: Any = None  # the camera framing the keyframes were rendered with (`progresslm.sim.mujoco_scene.framing.Framing`)


def demo_from_expert(
    task: str, seed: int = 0, camera: str = "corner2", size: int = 224, framed: bool = True
) -> ExpertDemo:
    """Run the scripted expert of a Meta-World `task` on the variant of `seed` and render its keyframes.

    With `framed` (the default) the camera is aimed at and zoomed onto the region the task happens in, as
    the simulated benchmark (and so the default models' training data) frames it; pass `demo.framing` to
    `MetaWorldCamera` so the observations are framed the same way. Use the camera and size the wrapper
    renders with, so the observations look like the demonstration.
    """

    check_gl()  # before mujoco is imported, so headless machines get EGL

    spec = get_task(task)
    episode = rollout(spec, seed, keep_failures=True)
    if not episode.ok:
        raise ExpertError(f"demo_from_expert: the expert episode of {task} seed {seed} is unusable "
                                  f"({episode.failure}); try another seed")  # fmt: skip
    env = make_env(task, seed)
    try:
        with FrameRenderer(env.model, size) as renderer:
            renderer.camera_id(camera)  # an unknown camera fails here, with the valid names
            framing = frame_cameras(env.model, [camera], region_points([episode])) if framed else None
            frames = []
            with apply_framing(env.model, framing):
                for index in episode.key_frames:
                    restore(env, episode.states[index])
                    frames.append(renderer.render(env.data, camera))
    finally:
        env.close()
    return ExpertDemo(
        task, int(seed), spec.goal, tuple(frames), tuple(episode.key_frames), tuple(spec.step_descriptions), framing
    )


class MetaWorldCamera:
    """`render` for a Meta-World env: a `size`-px frame from `camera` with the project's fast settings, framed
    as `framing` says (an `ExpertDemo.framing`, so observations are framed like the demonstration).

    Call it (and `close` it) from the thread that steps the env: the GL context belongs to it.
    """

    def __init__(self, env: gymnasium.Env, camera: str = "corner2", size: int = 224, framing: Any = None):
        self.camera = camera
        self.framing = framing
        self._renderer = FrameRenderer(env.unwrapped.model, size)
        self._renderer.camera_id(camera)  # fail now on an unknown camera

    def __call__(self, env: gymnasium.Env) -> np.ndarray:
        with apply_framing(env.unwrapped.model, self.framing):
            return self._renderer.render(env.unwrapped.data, self.camera)

    def close(self) -> None:
        self._renderer.close()

    def __enter__(self) -> MetaWorldCamera:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

