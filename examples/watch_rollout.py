"""A held-out Meta-World rollout to watch: frames of one expert episode and the keyframes of another.

    python examples/watch_rollout.py --task drawer-open-v3 --out runs/watch_example
    progresslm watch runs/watch_example/frames --demo-dir runs/watch_example/keyframes \
        --goal "open the drawer" --fps 10 --out runs/watch_example/watch

The two episodes are rendered as the simulated benchmark renders a unit (`progresslm.sim.samples`): one camera
framed on the region where both happen, goal markers hidden, and a different scene look for each (lights,
surfaces, clutter; level `default`). The default task, drawer-open, is one of the benchmark's tasks: no default
model was trained or selected on it. The frames are every `--stride`-th simulator step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="drawer-open-v3")
    parser.add_argument("--camera", default="corner3")
    parser.add_argument("--seed", type=int, default=7_000_001, help="the rollout's seed (the demo uses seed + 1)")
    parser.add_argument("--stride", type=int, default=2, help="keep every Nth simulator step")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="runs/watch_example")
    args = parser.parse_args()

    from PIL import Image

    from progresslm.sim.family import get_family

    family = get_family("metaworld")
    worker = family.worker()  # sets up offscreen GL before anything imports MuJoCo
    spec = family.tasks()[args.task]
    run, demo = worker.rollout(args.task, args.seed), worker.rollout(args.task, args.seed + 1)
    if run is None or demo is None:
        raise SystemExit(f"{args.task}: the expert failed on seed {args.seed} or {args.seed + 1}; try another --seed")
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    scenes = [worker.scene(demo, args.size, family.cameras.all), worker.scene(run, args.size, family.cameras.all)]
    frames = list(range(0, run.n_frames, args.stride))
    try:
        scenes[0].frame([demo, run])
        scenes[1].framing = scenes[0].framing  # one camera for both, as a same-view benchmark pair
        for scene in scenes:
            scene.style = worker.sample_style("default", scene, rng)
        for folder, scene, names in ((out / "keyframes", scenes[0], {f: f"k{i}.jpg" for i, f in enumerate(demo.key_frames)}),
                                     (out / "frames", scenes[1], {f: f"f{f:04d}.jpg" for f in frames})):
            folder.mkdir(parents=True, exist_ok=True)
            for f, name in names.items():
                Image.fromarray(scene.render(f, args.camera)[0]).save(folder / name, quality=90)
    finally:
        for scene in scenes:
            scene.close()
        worker.close()
    truth = {"task": args.task, "goal": spec.goal, "steps": list(spec.step_descriptions), "camera": args.camera,
             "frames": len(frames), "key_frames": run.key_frames, "stride": args.stride}  # fmt: skip
    (out / "rollout.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"{len(frames)} frames in {out / 'frames'}, {len(demo.key_frames)} keyframes in {out / 'keyframes'}")
    print(f'progresslm watch {out / "frames"} --demo-dir {out / "keyframes"} --goal "{spec.goal}" --fps '
          f"{10 / args.stride:g} --out {out / 'watch'}")


if __name__ == "__main__":
    main()
