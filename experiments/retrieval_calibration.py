"""Calibrate the `retrieval` N/A threshold on a training split and see how it transfers.

Reads a simulator build (`progresslm sim build`): calibrates on the visual samples of one split
(default `sft`), writes the calibration JSON, prints the best-similarity distribution per kind of
sample on the calibration split and on the evaluation split (default `bench`), the share answered
at the chosen threshold, and the feature speed (images per second, batch 16, 224 px).

    python experiments/retrieval_calibration.py BUILD_DIR [--calibrate-on sft] [--evaluate-on bench]
        [--out retrieval_calibration.json] [--max-afrr 0.1]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def kind(sample) -> str:
    if sample.answerable:
        return sample.split
    made = sample.extra.get("sim", {}).get("unanswerable")
    return f"unanswerable:{made}" if made else "unanswerable"


def split_samples(build: Path, split: str) -> list:
    from progresslm.bench.format import load_bench

    names = ("visual_same_view", "visual_cross_view", "visual-unanswerable")
    files = [build / split / f"{name}.jsonl" for name in names]
    return load_bench([f for f in files if f.exists()]).samples


def describe(samples, scores: np.ndarray, threshold: float) -> None:
    groups: dict[str, list[float]] = defaultdict(list)
    for sample, score in zip(samples, scores):
        groups[kind(sample)].append(float(score))
    print(f"| kind | n | min | median | max | answered at {threshold:.4f} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sorted(groups):
        values = np.array(groups[name])
        answered = 100 * float(np.mean(values >= threshold))
        low, middle, high = values.min(), np.median(values), values.max()
        print(f"| {name} | {values.size} | {low:.3f} | {middle:.3f} | {high:.3f} | {answered:.1f}% |")


def speed(features, batch: int = 16, rounds: int = 4) -> float:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(batch)]
    features.of_images(images)  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        features.of_images(images)
    return batch * rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="a `progresslm sim build` output folder")
    parser.add_argument("--calibrate-on", default="sft")
    parser.add_argument("--evaluate-on", default="bench")
    parser.add_argument("--out", type=Path, default=Path("retrieval_calibration.json"))
    parser.add_argument("--max-afrr", type=float, help="refuse at most this share of answerable samples")
    args = parser.parse_args()

    from progresslm.backends.retrieval import best_similarities, calibrate_threshold
    from progresslm.features import ImageFeatures

    features = ImageFeatures()
    print(f"feature speed: {speed(features):.1f} images/s (batch 16, 224 px)")
    images = args.build / "images"
    train = split_samples(args.build, args.calibrate_on)
    start = time.perf_counter()
    calibration = calibrate_threshold(
        train,
        images,
        args.out,
        made_from=f"{args.build.name}/{args.calibrate_on} (visual samples)",
        features=features,
        max_afrr=args.max_afrr,
    )
    seconds = time.perf_counter() - start
    print(f"calibrated on {len(train)} samples ({features.computed} images) in {seconds:.0f} s: "
          f"threshold {calibration.threshold:.4f}, balanced accuracy {calibration.balanced_accuracy:.3f} -> {args.out}")
    print(f"\n## {args.calibrate_on}\n")
    describe(train, best_similarities(train, images, features), calibration.threshold)
    held_out = split_samples(args.build, args.evaluate_on)
    if held_out:
        print(f"\n## {args.evaluate_on}\n")
        describe(held_out, best_similarities(held_out, images, features), calibration.threshold)


if __name__ == "__main__":
    main()
