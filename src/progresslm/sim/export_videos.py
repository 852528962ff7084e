"""Simulated episodes written as a users'-data videos folder (`progresslm sim export-videos`): one sub-folder per
task, `<episode>.<camera>.mp4` per camera, and a sidecar `<episode>.json` with the goal, the key steps (end times
and descriptions, from the simulator's detectors) and the rollout's seed and key frames. `data build` and `watch
--source` read it as they read a robot's recordings, which makes a round trip against `sim build`'s labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from progresslm.io import write_text_atomic

EXPORT_SEED_BASE = 9_000_000  # rollout seeds far from the builds' seeds (sim.samples.episode_seed)


def export_videos(tasks: list[str], episodes: int, out: Path, cameras: tuple[str, ...] = ("corner3", "topview"),
                  size: int = 128, stride: int = 1, seed: int = 0, level: str = "default",
                  codec: str = "libx264") -> list[Path]:
    """Roll out `episodes` successful expert episodes of each task and write their videos; returns the sidecars."""
    from progresslm.sim.mujoco_scene.render import check_gl

    # Before anything imports MuJoCo: mujoco picks its GL backend once, at import, and without MUJOCO_GL on a machine
    # with no display it would try GLFW. check_gl sets the EGL default, as `sim build` does, and raises RenderError
    # saying what to install when offscreen GL does not work.
    check_gl()
    from progresslm.data.video import write_video
    from progresslm.sim.family import family_of, get_family
    from progresslm.sim.samples import TRIES

    written = []
    workers: dict = {}
    try:
        for t, task in enumerate(tasks):
            family = get_family(family_of(task))
            # Before anything imports the simulator: a MuJoCo family's worker picks EGL on a headless machine, and
            # raises RenderError saying what to install when offscreen GL does not work.
            worker = workers.get(family.name) or workers.setdefault(family.name, family.worker())
            spec = family.tasks()[task]
            folder = out / task
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / "task.txt", spec.goal + "\n")
            attempt = 0
            for e in range(episodes):
                episode = None
                while episode is None:
                    if attempt >= TRIES * episodes:
                        raise RuntimeError(f"{task}: the expert failed on {attempt} seeds")
                    run_seed = EXPORT_SEED_BASE + seed * 10_000 + t * 100 + attempt
                    attempt += 1
                    episode = worker.rollout(task, run_seed)
                scene = worker.scene(episode, size, cameras)
                try:
                    scene.frame([episode])
                    scene.style = worker.sample_style(level, scene, np.random.default_rng(run_seed))
                    frames = list(range(0, episode.n_frames, stride))
                    for camera in cameras:
                        pixels = [scene.render(f, camera)[0] for f in frames]
                        write_video(folder / f"ep{e}.{camera}.mp4", pixels, family.fps / stride, codec)
                finally:
                    scene.close()
                # key steps end at their detected frames, in seconds of the (possibly strided) video
                steps = [{"end": round(min(round(k / stride), len(frames) - 1) / (family.fps / stride), 6), "text": text}
                         for k, text in zip(episode.key_frames[1:], spec.step_descriptions)]
                sidecar = folder / f"ep{e}.json"
                write_text_atomic(sidecar, json.dumps({
                    "task": spec.goal, "steps": steps,
                    "sim": {"task": task, "seed": run_seed, "key_frames": episode.key_frames, "stride": stride,
                            "level": level, "cameras": list(cameras)},
                }, indent=1, allow_nan=False) + "\n")
                written.append(sidecar)
    finally:
        for worker in workers.values():
            worker.close()
    return written
