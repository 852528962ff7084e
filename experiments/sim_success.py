"""Do the scripted experts succeed, and do the key-step detectors find every step? One row per task.

Runs N seeds of every registered task (or those given) on a process pool and prints, per task: the
expert's success rate, the share of episodes kept (success and every key step found, none shorter
than MIN_STEP_FRAMES), mean episode length, mean keyframe indices, the shortest key step seen and
the detection failures. A task is fit for the benchmark when it keeps at least 80 % of its seeds.

    MUJOCO_GL=egl python experiments/sim_success.py [--seeds 10] [--workers 2] [--tasks push-v3 ...]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from multiprocessing import Pool

KEEP_TARGET = 0.8


def _run(job: tuple[str, int, int]):
    from progresslm.sim.metaworld.rollout import rollout

    task, seed, max_steps = job
    return rollout(task, seed, max_steps, keep_failures=True)


def _short(reason: str) -> str:
    """A failure reason without the detector text, so equal failures count together."""
    return reason.split(" (")[0].split(" lasts")[0] + (" (too short)" if " lasts " in reason else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per task")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--tasks", nargs="*", help="task names (default: all registered)")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from progresslm.sim.metaworld.tasks import get_task, list_tasks

    tasks = args.tasks or list_tasks()
    for name in tasks:
        get_task(name)  # unknown names fail here with the valid list
    jobs = [(t, s, args.max_steps) for t in tasks for s in range(args.first_seed, args.first_seed + args.seeds)]

    start = time.perf_counter()
    episodes: dict[str, list] = {t: [] for t in tasks}
    with Pool(args.workers) as pool:
        # one chunk per task, so each worker builds a task's Meta-World variants (~0.5 s) once
        for episode in pool.imap(_run, jobs, chunksize=max(args.seeds, 1)):
            episodes[episode.task].append(episode)
    elapsed = time.perf_counter() - start

    header = f"{'task':30s} {'success':>7s} {'kept':>5s} {'steps':>6s} {'min gap':>7s}  mean key frames / failures"
    print(header)
    print("-" * len(header))
    unfit = []
    for name in tasks:
        runs = episodes[name]
        n = len(runs)
        succeeded = [e for e in runs if e.success]
        kept = [e for e in runs if e.ok]
        steps = sum(e.n_steps for e in succeeded) / max(len(succeeded), 1)
        if kept:
            width = len(kept[0].key_frames)
            mean_keys = [sum(e.key_frames[i] for e in kept) / len(kept) for i in range(width)]
            keys = "[" + " ".join(f"{k:.0f}" for k in mean_keys) + "]"
            gap = min(b - a for e in kept for a, b in zip(e.key_frames, e.key_frames[1:]))
        else:
            keys, gap = "[]", 0
        failures = Counter(_short(e.failure) for e in runs if e.failure)
        notes = "; ".join(f"{count}x {reason}" for reason, count in failures.most_common())
        print(
            f"{name:30s} {len(succeeded):3d}/{n:<3d} {len(kept) / n:5.0%} {steps:6.1f} {gap:7d}  {keys}"
            + (f"  {notes}" if notes else "")
        )
        if len(kept) < KEEP_TARGET * n:
            unfit.append(name)
    total = sum(len(v) for v in episodes.values())
    print(f"\n{total} episodes in {elapsed:.1f} s ({total / elapsed:.1f} episodes/s on {args.workers} workers)")
    print(f"tasks below {KEEP_TARGET:.0%} kept: {', '.join(unfit) if unfit else 'none'}")


if __name__ == "__main__":
    main()
