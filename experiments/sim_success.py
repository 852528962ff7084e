"""Do the scripted experts succeed, and do the key-step detectors find every step? One row per task.

Runs N seeds of every registered task of a simulator family (or those given) on a process pool and prints, per
task: the expert's success rate, the share of episodes kept (success and every key step found, none shorter than
MIN_STEP_FRAMES), mean episode length, mean keyframe indices, the shortest key step seen and the detection
failures. A task is fit for the benchmark when it keeps at least 80 % of its seeds.

    MUJOCO_GL=egl python experiments/sim_success.py [--family metaworld] [--seeds 10] [--workers 2] [--tasks ...]

Meta-World (the default) runs its own rollout with failures kept, as before. Any other family runs through the
family contract (`progresslm.sim.family`): `get_family(NAME).worker().rollout(task, seed)`, one worker per
process. That contract returns None for an expert episode that is not kept; for such a seed the script asks the
family's rollout module (`progresslm.sim.NAME.rollout.rollout(task, seed)`, same seed, same episode) why, so the
success and kept columns stay separate; a family without that module reports "not kept (no reason given)".
Those families' worker processes write their stdout to /dev/null (pybullet prints there for each client).
`--max-steps` is Meta-World's; other families' tasks set their own episode lengths.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool

from progresslm.sim.family import UnknownFamilyError, get_family

KEEP_TARGET = 0.8
METAWORLD = "metaworld"
NO_REASON = "not kept (no reason given)"

_WORKER = None  # this process's family worker (a family's envs and renderers are kept across its jobs)


@dataclass
class Outcome:
    """What the table needs of one contract rollout: the family's episode objects stay in the worker process."""

    task: str
    seed: int
    success: bool | None  # None: not kept and the family gives no reason
    ok: bool
    n_steps: int
    key_frames: list[int]
    failure: str | None


def _run(job: tuple[str, int, int]):
    from progresslm.sim.metaworld.rollout import rollout

    task, seed, max_steps = job
    return rollout(task, seed, max_steps, keep_failures=True)


def _steps(episode) -> int:
    """Simulator steps of `episode` (its frames less the first when it does not say)."""
    return int(getattr(episode, "n_steps", episode.n_frames - 1))


def _run_family(job: tuple[str, str, int]) -> Outcome:
    """One expert rollout of `job` = (family, task, seed) through the family contract."""
    global _WORKER
    family, task, seed = job
    if _WORKER is None:
        _WORKER = get_family(family).worker()
    episode = _WORKER.rollout(task, seed, "expert", None)
    if episode is None:
        try:
            module = importlib.import_module(f"progresslm.sim.{family}.rollout")
        except ImportError:
            return Outcome(task, seed, None, False, 0, [], NO_REASON)
        episode = module.rollout(task, seed)  # the same seeded episode, with its failure kept
        if episode.ok:  # the contract refused an episode its own rollout keeps: say so rather than hide it
            return Outcome(task, seed, episode.success, False, _steps(episode), list(episode.key_frames),
                           "worker refused an episode its rollout keeps")
    return Outcome(task, seed, bool(getattr(episode, "success", episode.ok)), bool(episode.ok), _steps(episode),
                   list(episode.key_frames), episode.failure)


def _quiet_stdout() -> None:
    """Pool initializer for contract families: the worker's C-level stdout goes to /dev/null (pybullet prints its
    client's argv and GL strings there for every client); results come back through the pool, errors on stderr."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _short(reason: str) -> str:
    """A failure reason without the detector text, so equal failures count together."""
    return reason.split(" (")[0].split(" lasts")[0] + (" (too short)" if " lasts " in reason else "")


def _tasks(family: str, given: list[str] | None) -> list[str]:
    """The tasks to run: `given` (each checked against the family's) or every task of `family`."""
    if family == METAWORLD:
        from progresslm.sim.metaworld.tasks import get_task, list_tasks

        tasks = given or list_tasks()
        try:
            for name in tasks:
                get_task(name)  # unknown names fail here with the valid list
        except ValueError as error:
            sys.exit(f"error: {error}")
        return tasks
    own = list(get_family(family).tasks())
    unknown = [t for t in given or () if t not in own]
    if unknown:
        sys.exit(f"error: unknown {family} task(s) {', '.join(unknown)}; valid tasks: {', '.join(own)}")
    return given or own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default=METAWORLD, help="simulator family (default: metaworld)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per task")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="Meta-World's episode length (default 500)")
    parser.add_argument("--tasks", nargs="*", help="task names (default: all of the family's)")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        family = get_family(args.family)
    except UnknownFamilyError as error:
        sys.exit(f"error: {error}")
    if args.seeds < 1 or args.workers < 1:
        sys.exit("error: --seeds and --workers must be at least 1")
    if args.family != METAWORLD and args.max_steps is not None:
        sys.exit(f"error: --max-steps is Meta-World's; {args.family} tasks set their own episode lengths")
    if args.family != METAWORLD:
        problem = family.problem()
        if problem:
            sys.exit(f"error: the {args.family} family cannot run here: {problem}")
    tasks = _tasks(args.family, args.tasks)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.family == METAWORLD:
        run, jobs = _run, [(t, s, args.max_steps or 500) for t in tasks for s in seeds]
    else:
        run, jobs = _run_family, [(args.family, t, s) for t in tasks for s in seeds]

    start = time.perf_counter()
    episodes: dict[str, list] = {t: [] for t in tasks}
    quiet = None if args.family == METAWORLD else _quiet_stdout
    with Pool(args.workers, initializer=quiet) as pool:
        # one chunk per task, so each worker builds a task's variants (Meta-World ~0.5 s) or env once
        for episode in pool.imap(run, jobs, chunksize=max(args.seeds, 1)):
            episodes[episode.task].append(episode)
    elapsed = time.perf_counter() - start

    _print_table(tasks, episodes, elapsed, args.workers)


def _print_table(tasks: list[str], episodes: dict[str, list], elapsed: float, workers: int) -> None:
    """One row per task: success, kept share, mean steps of successes, shortest key step, mean key frames, failures."""
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
    print(f"\n{total} episodes in {elapsed:.1f} s ({total / elapsed:.1f} episodes/s on {workers} workers)")
    print(f"tasks below {KEEP_TARGET:.0%} kept: {', '.join(unfit) if unfit else 'none'}")


if __name__ == "__main__":
    main()
