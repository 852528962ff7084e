"""Latency of the default models on the CPU with a 5-keyframe demonstration, one observation at a time.

    python benchmarks/nano_latency.py                      # both shipped models, small simulated benchmark
    python benchmarks/nano_latency.py --n 32 --threads 2

- matcher, online: a `ProgressScorer` holds the demonstration (its keyframes are encoded once, on the first
  frame) and scores frames one by one: the time per frame is the whole call (image in, Estimate out), and
  apart from it the matcher's own share (observation features + comparison). Target: <= 20 ms per frame.
- nano: the `nano` backend one sample at a time, its matcher hints included (as `progresslm eval` asks
  them), then batched by --batch. Target: <= 0.3 s per sample one at a time.
"""

from __future__ import annotations

import argparse
import statistics
import time


def samples_with_five_keyframes(n: int):
    from progresslm.bench.format import load_bench
    from progresslm.sim.build import build_small_bench

    outcome = build_small_bench(progress=False)
    samples = [s for s in load_bench(outcome.bench_files()).samples
               if s.split == "visual_same_view" and len(s.demo.items) == 5]  # fmt: skip
    if not samples:
        raise SystemExit("no same-view sample with a 5-keyframe demonstration in the small benchmark")
    return samples[:n], outcome.image_root


def matcher_online(samples, root, frames: int) -> None:
    from PIL import Image

    from progresslm.online.scorer import ProgressScorer

    sample = samples[0]
    demo = [sample.image_path(name, root) for name in sample.demo.items]
    trajectory = [s for s in samples if s.trajectory_id == sample.trajectory_id] or samples
    images = [Image.open(s.image_path(s.observation, root)).convert("RGB") for s in trajectory]
    with ProgressScorer(sample.goal, demo, backend="matcher") as scorer:
        scorer.score([images[0]])  # the demonstration's features, once
        runner = scorer.backend.runner
        total, own = [], []
        for i in range(frames):
            image = images[i % len(images)]
            start = time.perf_counter()
            scorer.score([image])
            total.append(time.perf_counter() - start)
            path = scorer._folder / "probe.png"
            image.save(path)
            start = time.perf_counter()
            runner.match_one(sample, [*demo, path])
            own.append(time.perf_counter() - start)
            runner.images._index.pop(str(path.resolve()), None)  # the next probe is a new frame
    print(f"matcher online: {1000 * statistics.median(total):.1f} ms per frame (median of {frames}; "
          f"{1000 * statistics.median(own):.1f} ms of it features + comparison, the rest the scorer's image I/O)")


def nano(samples, root, batch: int) -> None:
    from progresslm.backends.base import BackendOptions, Request
    from progresslm.backends.nano import NanoBackend
    from progresslm.images import ImageStore
    from progresslm.nano.hints import HintProvider
    from progresslm.prompts import build_prompt

    provider = HintProvider()
    store = ImageStore()
    backend = NanoBackend(BackendOptions(device="cpu", dtype="float32", batch_size=1), "two-stage")

    def request(sample):
        hints = provider.hints([sample], root)
        prompt = build_prompt(sample, "two-stage", root, hints=hints.get(sample.uid))
        return Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil"))

    list(backend.generate([request(samples[0])]))  # warm-up
    times, tokens = [], []
    for sample in samples:
        provider.main.images._index.pop(str(sample.image_path(sample.observation, root).resolve()), None)
        start = time.perf_counter()
        reply = next(iter(backend.generate([request(sample)])))[1]
        times.append(time.perf_counter() - start)
        tokens.append(reply.completion_tokens or 0)
    print(f"nano one at a time: {statistics.median(times):.3f} s per sample (median of {len(samples)}, hints "
          f"included; {statistics.mean(tokens):.0f} new tokens on average)")
    backend.options.batch_size = batch
    requests = [request(s) for s in samples]
    start = time.perf_counter()
    list(backend.generate(requests))
    print(f"nano batched by {batch}: {(time.perf_counter() - start) / len(requests):.3f} s per sample (hints apart)")
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["matcher", "nano"], choices=["matcher", "nano"])
    parser.add_argument("--n", type=int, default=16, help="samples (nano) and frames (matcher) to time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    samples, root = samples_with_five_keyframes(args.n)
    print(f"{torch.get_num_threads()} torch threads, {len(samples)} samples with 5 keyframes")
    if "matcher" in args.models:
        matcher_online(samples, root, args.n)
    if "nano" in args.models:
        nano(samples, root, args.batch)


if __name__ == "__main__":
    main()
