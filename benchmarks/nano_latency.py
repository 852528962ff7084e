"""Per-sample latency of a local model on the CPU, one sample at a time and batched.

    python benchmarks/nano_latency.py --model PATH [--bench FILE... --image-root DIR] [--n 16] [--batch 8]

Uses the `hf` backend exactly as `progresslm eval` does (greedy, two-stage prompts). Without `--bench`
it uses the visual same-view samples with 5-keyframe demonstrations of the drawn example benchmark.
Target for the default model: at most 0.3 s per sample with a 5-keyframe demonstration.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--bench", nargs="+")
    parser.add_argument("--image-root")
    parser.add_argument("--n", type=int, default=16, help="samples to time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from progresslm.backends.base import BackendOptions, Request
    from progresslm.backends.hf import HFBackend
    from progresslm.images import ImageStore
    from progresslm.official import load_bench
    from progresslm.prompts import build_prompt

    if args.bench:
        files, root = args.bench, args.image_root
    else:
        from progresslm.bench.example import build_example, default_example_dir

        example = build_example(default_example_dir())
        files, root = [str(example.files[0])], str(example.root / "images")
    samples = [s for s in load_bench(files).samples if len(s.demo.items) == 5 and s.modality.value == "visual"]
    samples = samples[: args.n]
    if not samples:
        raise SystemExit("no visual sample with a 5-keyframe demonstration in the benchmark")
    store = ImageStore()
    requests = []
    for sample in samples:
        prompt = build_prompt(sample, "two-stage", root)
        requests.append(Request(sample.uid, 0, prompt, sample, store.encode_all(prompt.images, "pil")))

    for batch in (1, args.batch):
        options = BackendOptions(model=args.model, device="cpu", dtype="float32", batch_size=batch,
                                 max_new_tokens=args.max_new_tokens)
        backend = HFBackend(options, "two-stage")
        list(backend.generate(requests[:batch]))  # warm-up: load and first call
        start = time.perf_counter()
        replies = dict(backend.generate(requests))
        seconds = time.perf_counter() - start
        tokens = statistics.mean(r.completion_tokens or 0 for r in replies.values())
        print(f"batch {batch}: {seconds / len(requests):.3f} s per sample over {len(requests)} samples "
              f"({tokens:.0f} new tokens on average, {torch.get_num_threads()} threads)")
        backend.close()


if __name__ == "__main__":
    main()
