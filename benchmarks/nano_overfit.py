"""Can a model learn to read the observation image at all? Fit it to the rows of a few trajectories.

    python benchmarks/nano_overfit.py --model runs/nano/distilled [--trajectories 2] [--steps 150] \
        [--lr 1e-3] [--mode two-stage] [--colour-control] [--set KEY=VALUE ...] [--out runs/overfit]

Takes the same-view rows of the first `--trajectories` trajectories of the full simulator build's sft
split (`progresslm sim build --preset full`): inside one trajectory the goal, demonstration and prompt
text are identical and only the observation image changes, so the only way to give each row its own
answer is to read the image. It trains `--model` on those rows alone with `progresslm train sft`
(full fine-tuning, no augmentation), asks the fitted model the same rows with the `nano` backend,
and prints the training loss, how many distinct answers came back, anchor accuracy and NSE, beside
what the best constant answer per trajectory would get (the prior). A model that reads the image
ends far below the prior; one that cannot stays at it. Extra `--set` overrides go to the SFT recipe.

`--colour-control` replaces each observation by a plain image whose colour codes its progress (the
demonstration stays): it tells a language model that cannot read image tokens from a vision tower
whose tokens do not tell the real frames apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def rows_of(path: Path, trajectories: int) -> list[str]:
    """The JSONL lines of the first `trajectories` trajectory ids of `path`, in file order."""
    keep, lines = [], []
    for line in path.read_text().splitlines():
        tid = json.loads(line)["id"]
        if tid not in keep:
            if len(keep) == trajectories:
                break
            keep.append(tid)
        lines.append(line)
    return lines


def colour_rows(lines: list[str], image_root: Path, folder: Path) -> list[str]:
    """`lines` with every observation a plain 112 px image whose hue codes its progress label, and
    demonstration images as resolved paths (the rows then need no image root)."""
    import colorsys

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, line in enumerate(lines):
        row = json.loads(line)
        progress = float(str(row["progress_score"]).rstrip("%")) / 100
        rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(0.8 * progress, 0.9, 0.9))
        path = folder / f"{n:03d}.png"
        Image.new("RGB", (112, 112), rgb).save(path)
        row["visual_demo"] = [str(image_root / row["id"] / name) for name in row["visual_demo"]]
        row["stage_to_estimate"] = [str(path.resolve())]
        out.append(json.dumps(row))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model to fit (a directory)")
    parser.add_argument("--trajectories", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mode", default="two-stage", choices=("two-stage", "direct"))
    parser.add_argument("--colour-control", action="store_true", help="plain observations coding progress")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more SFT recipe overrides")
    parser.add_argument("--out", default="runs/overfit")
    args = parser.parse_args()

    home = Path(os.environ.get("PROGRESSLM_HOME", "~/.cache/progresslm")).expanduser()
    build = home / "sim-full-s0-v3"
    source = build / "sft" / "visual_same_view.jsonl"
    if not source.is_file():
        sys.exit(f"error: {source} not found; build it first with: progresslm sim build --preset full")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = out / "rows.jsonl"
    lines = rows_of(source, args.trajectories)
    image_root = build / "images"
    if args.colour_control:
        lines = colour_rows(lines, image_root, out / "colours")
    bench.write_text("\n".join(lines) + "\n")
    root_line = "null" if args.colour_control else str(image_root)
    recipe = out / "recipe.yaml"
    recipe.write_text(
        "kind: sft\n"
        f"model: {args.model}\n"
        f"data: {{files: [{bench}], image_root: {root_line}, mode: {args.mode}, trace_style: short}}\n"
        f"output_dir: {out / 'model'}\nlora: false\nmax_pixels: 12544\nlearning_rate: {args.lr}\n"
        f"lr_scheduler: constant\nwarmup_ratio: 0.0\nbatch_size: {args.batch}\nper_device_batch_size: {args.batch}\n"
        f"epochs: 10000\nmax_steps: {args.steps}\nbf16: false\nuse_cpu: true\nsave_steps: 100000\n"
        "logging_steps: 10\nseed: 0\nresume: false\n"
    )
    cli = [sys.executable, "-m", "progresslm.cli.main"]
    subprocess.run([*cli, "train", "sft", "--config", str(recipe), *args.set], check=True)
    root_args = [] if args.colour_control else ["--image-root", str(image_root)]
    subprocess.run([*cli, "eval", "--bench", str(bench), *root_args, "--backend", "nano",
                    "--model", str(out / "model"), "--mode", args.mode, "--out", str(out / "eval"), "--no-plots",
                    "--quiet", "--batch-size", "8"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip

    from progresslm.official import load_bench

    samples = {s.uid.split(":", 1)[1]: s for s in load_bench([bench]).samples}
    replies = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    losses = [json.loads(line) for line in (out / "model" / "log.jsonl").read_text().splitlines()]
    losses = [(h["step"], h["loss"]) for h in losses if "loss" in h]
    answers = [(r["score"], r["ref"]) for r in replies]
    truth = [samples[r["uid"].split(":", 1)[1]] for r in replies]

    def nse(pred, true):
        return abs(pred - true) / max(true, 1 - true) if pred is not None else 1.0

    model_nse = sum(nse(a[0], s.progress) for a, s in zip(answers, truth)) / len(truth)
    ref_acc = sum(a[1] == s.closest_idx for a, s in zip(answers, truth)) / len(truth)
    # the prior: per trajectory, the one answer that is best on its rows
    prior_nse, prior_ref = 0.0, 0
    for tid in {s.trajectory_id for s in truth}:
        mine = [s for s in truth if s.trajectory_id == tid]
        prior_nse += min(sum(nse(c.progress, s.progress) for s in mine) for c in mine)
        prior_ref += max(sum(s.closest_idx == k for s in mine) for k in {s.closest_idx for s in mine})
    what = "plain colour images coding progress" if args.colour_control else "the rendered frames"
    print(
        f"rows: {len(truth)} ({args.trajectories} trajectories, only the observation image differs inside one; {what})"
    )
    print(
        f"model: {args.model}; {args.steps} steps, batch {args.batch}, lr {args.lr}, mode {args.mode} {' '.join(args.set)}"
    )
    print("training loss: " + ", ".join(f"{step}: {loss:.3f}" for step, loss in losses))
    print(
        f"distinct answers (score, anchor): {len(set(answers))} of {len({(s.progress, s.closest_idx) for s in truth})}"
    )
    print(
        f"anchor accuracy: {100 * ref_acc:.1f} % (best constant per trajectory: {100 * prior_ref / len(truth):.1f} %)"
    )
    print(f"NSE: {100 * model_nse:.1f} (best constant per trajectory: {100 * prior_nse / len(truth):.1f})")


if __name__ == "__main__":
    main()
