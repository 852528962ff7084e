"""Throughput of a whole simulated build: rendered frames/s and benchmark samples/s.

    MUJOCO_GL=egl python benchmarks/sim_throughput.py [--family fetch] [--preset small] [--workers 2] [--size 224]

Builds into a temporary folder (nothing cached), so it measures rollouts, rendering, JPEG writing,
labelling and the card's baselines together. `--family NAME` builds the preset on that simulator family's
tasks (default: the preset's own families; `small` is Meta-World's). Pure rendering speed: benchmarks/sim_render_speed.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children (the build's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default=None, help="simulator family (default: the preset's, Meta-World for small)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--level", default="default")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from progresslm.sim.sim_build import SimBuildConfig, SimBuildError, build

    out = Path(tempfile.mkdtemp(prefix="progresslm-sim-"))
    try:
        config = SimBuildConfig(preset=args.preset, out=str(out / "data"), size=args.size, level=args.level,
                                workers=args.workers, family=args.family)
    except SimBuildError as error:
        shutil.rmtree(out)
        raise SystemExit(f"error: {error}") from None
    try:
        load_start = os.getloadavg()[0]
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        outcome = build(config, progress=False)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
        samples = sum(sum(counts.values()) for counts in outcome.samples.values())
        bench = sum(outcome.samples.get("bench", {}).values())
        families = "+".join(config.families)
        print(f"preset {args.preset} ({families}), {args.size} px, {args.workers} workers, level {args.level}")
        print(f"1-min load average: {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} CPUs)")
        print(f"build time: {seconds:.1f} s ({outcome.built} episodes)")
        print(f"rendered frames: {outcome.frames} -> {outcome.frames / seconds:.1f} frames/s over the whole build")
        print(f"CPU time: {cpu:.1f} s (this process and its finished workers) -> {outcome.frames / cpu:.1f} frames "
              "per CPU-second (less sensitive than frames/s to other work on a shared machine)")
        print(f"samples: {samples} ({bench} bench) -> {samples / seconds:.1f} samples/s")
        rates = {t: s["successes"] / max(s["attempts"], 1) for t, s in outcome.success.items()}
        print("expert success per task: " + ", ".join(f"{t} {100 * r:.0f}%" for t, r in sorted(rates.items())))
    finally:
        if args.keep:
            print(f"kept {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
