"""Throughput of a whole simulated build: rendered frames/s and benchmark samples/s.

    MUJOCO_GL=egl python benchmarks/sim_throughput.py [--preset small] [--workers 2] [--size 224]

Builds into a temporary folder (nothing cached), so it measures rollouts, rendering, JPEG writing,
labelling and the card's baselines together. Pure rendering speed: benchmarks/sim_render_speed.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--level", default="default")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from progresslm.sim.sim_build import SimBuildConfig, build

    out = Path(tempfile.mkdtemp(prefix="progresslm-sim-"))
    start = time.perf_counter()
    outcome = build(SimBuildConfig(preset=args.preset, out=str(out / "data"), size=args.size, level=args.level,
                                   workers=args.workers), progress=False)
    seconds = time.perf_counter() - start
    samples = sum(sum(counts.values()) for counts in outcome.samples.values())
    bench = sum(outcome.samples.get("bench", {}).values())
    print(f"preset {args.preset}, {args.size} px, {args.workers} workers, level {args.level}")
    print(f"build time: {seconds:.1f} s ({outcome.built} episodes)")
    print(f"rendered frames: {outcome.frames} -> {outcome.frames / seconds:.1f} frames/s over the whole build")
    print(f"samples: {samples} ({bench} bench) -> {samples / seconds:.1f} samples/s")
    rates = {t: s["successes"] / max(s["attempts"], 1) for t, s in outcome.success.items()}
    print("expert success per task: " + ", ".join(f"{t} {100 * r:.0f}%" for t, r in sorted(rates.items())))
    if args.keep:
        print(f"kept {out}")
    else:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
