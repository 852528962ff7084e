"""How fast are 224-px simulator frames? One process and a pool, with and without randomisation.

Replays stored states of a scripted Meta-World episode (`mj_setState` + `mj_forward`, as a
dataset build re-renders them) through `FrameRenderer`, cycling over the scene cameras. Every run of
`--episode` frames samples a new scene style (light, colours, background texture, camera jitter,
distractors), as one observation episode would, and applies it around each frame together with
hidden goal markers, as `progresslm.sim.samples` does; level `none` applies the empty style.
Target: at least 40 frames/s on the 2 cores. PNG encoding and simulation are not counted.

    MUJOCO_GL=egl python benchmarks/sim_render_speed.py [--frames 600] [--size 224] [--levels none,default]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import warnings

_worker: dict = {}


def setup(task: str, size: int, steps: int) -> None:
    """Per process: a Meta-World scene, the states of one expert episode and a renderer."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", module="metaworld")  # its expert warns about its own gains
    from progresslm.sim.mujoco_scene.render import FrameRenderer, check_gl

    check_gl()
    import metaworld
    import mujoco
    import numpy as np
    from metaworld.policies import ENV_POLICY_MAP

    benchmark = metaworld.MT1(task, seed=0)
    env = benchmark.train_classes[task]()
    env.set_task(benchmark.train_tasks[0])
    obs, _ = env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    policy = ENV_POLICY_MAP[task]()
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    states = []
    for _ in range(steps):
        state = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, data, state, spec)
        states.append(state)
        obs, *_ = env.step(policy.get_action(obs))
    _worker.update(env=env, model=model, data=data, states=states, spec=spec, renderer=FrameRenderer(model, size))


def render_chunk(job: tuple[int, int, str, int]) -> int:
    """Renders `count` frames starting at state `start`; `level` picks the randomisation."""
    import mujoco
    import numpy as np

    from progresslm.sim.mujoco_scene.edits import goal_sites, hide_sites, task_object_geoms
    from progresslm.sim.mujoco_scene.randomise import Randomizer
    from progresslm.sim.mujoco_scene.render import SCENE_CAMERAS

    start, count, level, seed = job
    model, data, states, renderer = _worker["model"], _worker["data"], _worker["states"], _worker["renderer"]
    keep = task_object_geoms(model)
    randomizer = Randomizer(level)
    style = randomizer.sample(np.random.default_rng(seed), avoid_xy=[data.geom_xpos[keep[0]][:2]])
    for i in range(start, start + count):
        mujoco.mj_setState(model, data, states[i % len(states)], _worker["spec"])
        mujoco.mj_forward(model, data)
        with hide_sites(model, goal_sites(model)), randomizer.apply(model, style, keep=keep, renderer=renderer):
            renderer.render(data, SCENE_CAMERAS[i % len(SCENE_CAMERAS)])
    return count


def ready(_: int) -> int:
    time.sleep(0.2)  # long enough that every worker takes one
    return os.getpid()


def jobs(frames: int, episode: int, level: str) -> list[tuple[int, int, str, int]]:
    return [(start, min(episode, frames - start), level, start) for start in range(0, frames, episode)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick-place-v3")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=600, help="frames per measurement")
    parser.add_argument("--episode", type=int, default=50, help="frames per sampled style")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--levels", default="none,default", help="comma-separated randomisation levels")
    args = parser.parse_args()
    levels = args.levels.split(",")

    print(f"{args.size}-px frames of {args.task}, {args.frames} per measurement; cpus: {os.cpu_count()}")
    setup(args.task, args.size, steps=60)
    render_chunk((0, 10, "none", 0))  # warm-up: first frames upload textures
    for level in levels:
        began = time.perf_counter()
        done = sum(render_chunk(job) for job in jobs(args.frames, args.episode, level))
        print(f"  1 process,   randomisation {level:8s}: {done / (time.perf_counter() - began):6.1f} frames/s")
    _worker["renderer"].close()

    context = multiprocessing.get_context("spawn")  # no GL state inherited from this process
    with context.Pool(args.processes, initializer=setup, initargs=(args.task, args.size, 60)) as pool:
        while len(set(pool.map(ready, range(args.processes), chunksize=1))) < args.processes:
            pass  # time only once every worker has its scene and renderer
        pool.map(render_chunk, [(0, 10, "none", 0)] * args.processes, chunksize=1)
        for level in levels:
            began = time.perf_counter()
            done = sum(pool.map(render_chunk, jobs(args.frames, args.episode, level), chunksize=1))
            rate = done / (time.perf_counter() - began)
            print(f"  {args.processes} processes, randomisation {level:8s}: {rate:6.1f} frames/s")


if __name__ == "__main__":
    main()
