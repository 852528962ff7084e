"""How much do shortcuts score on the simulated benchmark, with and without scene randomisation?

    MUJOCO_GL=egl python experiments/sim_shortcuts.py [--preset small] [--levels none default strong]

Builds the preset at each randomisation level (cached in $PROGRESSLM_HOME) and prints the
`pixel-nn` and `constant` figures per axis from each dataset card. Target for `default`: pixel-nn
same-view PRC at most 70 while the images stay realistic.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--levels", nargs="+", default=["none", "default", "strong"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import logging

    logging.disable(logging.WARNING)  # the cards carry the figures; per-sample warnings are noise here
    from progresslm.io import data_home
    from progresslm.sim.sim_build import FORMAT_VERSION, SimBuildConfig, build

    axes = ("visual_same_view", "visual_cross_view", "text")
    print("| level | baseline | " + " | ".join(f"{a} NSE / PRC" for a in axes) + " |")
    print("|---|---|" + "---:|" * len(axes))
    for level in args.levels:
        name = f"sim-{args.preset}-s{args.seed}-v{FORMAT_VERSION}" + ("" if level == "default" else f"-{level}")
        outcome = build(SimBuildConfig(preset=args.preset, seed=args.seed, level=level,
                                       out=str(data_home() / name)), progress=False)
        card = json.loads((outcome.out / "card.json").read_text())
        for baseline, splits in card["baselines"].items():
            cells = []
            for axis in axes:
                row = splits.get(axis, {})
                nse, prc = row.get("nse"), row.get("prc")
                cells.append(f"{'–' if nse is None else f'{nse:.1f}'} / {'–' if prc is None else f'{prc:.1f}'}")
            print(f"| {level} | {baseline} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
