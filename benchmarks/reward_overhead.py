"""What does the progress reward cost an RL loop? Env steps per second with and without `ProgressReward`.

One Meta-World env (random actions, episodes of `--episode` steps) is stepped bare, with a camera
rendering every step (the floor any frame-based reward pays), and wrapped with `ProgressReward`
on the `pixel-nn` backend at every=1 and every=5, scoring in the background (async) or in `step()`
(sync). Each run also reports how many steps the applied progress lagged behind, on average, and
the batch sizes the scorer saw. pixel-nn costs CPU (PNG round trip, downscale: ~10 ms a 224-px
frame), which async scoring can only hide when a core is free. A model on a GPU mostly waits, so
`--latency` adds runs of pixel-nn behind a sleep per batch (a stand-in for such a model): there
the background worker hides the wait and batches the frames that queued meanwhile.

    MUJOCO_GL=egl python benchmarks/reward_overhead.py [--task drawer-open-v3] [--steps 1500] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="drawer-open-v3")
    parser.add_argument("--steps", type=int, default=1500, help="env steps per configuration")
    parser.add_argument("--episode", type=int, default=100, help="steps per episode (time limit)")
    parser.add_argument("--size", type=int, default=224, help="rendered frame side, pixels")
    parser.add_argument("--camera", default="corner2")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per batch of the slow model; 0: skip")
    args = parser.parse_args()

    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    from gymnasium.wrappers import TimeLimit

    from progresslm.backends.base import BackendOptions
    from progresslm.backends.pixel_nn import PixelNNBackend
    from progresslm.online.reward import MetaWorldCamera, ProgressReward, demo_from_expert
    from progresslm.sim.metaworld.rollout import make_env

    class SlowModel(PixelNNBackend):
        """pixel-nn answers after a fixed wait per batch, like a model on another device."""

        def generate(self, requests):
            time.sleep(args.latency)
            yield from super().generate(requests)

    demo = demo_from_expert(args.task, seed=0, camera=args.camera, size=args.size)
    print(f"{args.task}: {args.steps} steps per configuration, episodes of {args.episode}, "
          f"{args.size}-px frames from {args.camera}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip

    def run(label: str, wrap=None, render_only: bool = False) -> None:
        env = TimeLimit(make_env(args.task, 1), max_episode_steps=args.episode)
        camera = MetaWorldCamera(env, args.camera, args.size) if (wrap or render_only) else None
        if wrap is not None:
            env = wrap(env, camera)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, size=(args.steps, 4)).astype(np.float32)
        stale, applied = [], 0
        start = time.perf_counter()
        env.reset()
        for action in actions:
            _, _, terminated, truncated, info = env.step(action)
            if render_only:
                camera(env)
            if info.get("progress_stale_steps") is not None:
                stale.append(info["progress_stale_steps"])
            if terminated or truncated:
                applied += info.get("progress_scored", 0)
                env.reset()
        elapsed = time.perf_counter() - start
        extra = ""
        if wrap is not None:
            sizes = dict(sorted(env.worker.batch_sizes.items()))
            extra = f"  mean lag {np.mean(stale):4.1f} steps  batches {sizes}"
        print(f"{label:<28} {args.steps / elapsed:8.0f} steps/s{extra}")
        env.close()
        if camera is not None:
            camera.close()

    def wrapper(every: int, asynchronous: bool, slow: bool = False):
        def wrap(env, camera):
            backend = SlowModel(BackendOptions(), "two-stage") if slow else "pixel-nn"
            return ProgressReward(env, demo, backend, every=every, asynchronous=asynchronous, render=camera)

        return wrap

    run("bare env")
    run("env + render every step", render_only=True)
    for every in (1, 5):
        for asynchronous in (True, False):
            run(f"pixel-nn every={every} {'async' if asynchronous else 'sync'}", wrapper(every, asynchronous))
    if args.latency > 0:
        for asynchronous in (True, False):
            label = f"+{args.latency * 1000:.0f} ms/batch every=5 {'async' if asynchronous else 'sync'}"
            run(label, wrapper(5, asynchronous, slow=True))


if __name__ == "__main__":
    main()
