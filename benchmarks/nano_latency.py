"""Latency of the default models on the CPU with a 5-keyframe demonstration, one observation at a time.

    python benchmarks/nano_latency.py                      # both shipped models, small simulated benchmark
    python benchmarks/nano_latency.py --n 32 --threads 2

- matcher, online: a `ProgressScorer` holds the demonstration (its keyframes are encoded once, on the first
  frame) and scores frames one by one: the time per frame is the whole call (image in, Estimate out), and
  apart from it the matcher's own share (observation features + comparison). Target: <= 20 ms per frame.
- nano: the `nano` backend one sample at a time, its matcher hints included (as `progresslm eval` asks
  them), then batched by --batch; with its demonstration cache (`progresslm.nano.demo_cache`) off and on,
  in the same process. Target: <= 0.15 s per sample one at a time.
- nano --breakdown: where one sample's time goes (hints, prompt, processor, vision tower, projector, prefill,
  decode, parsing, the generation loop), cache off and on: exclusive times, so the shares sum to the total.

    python benchmarks/nano_latency.py --models nano --breakdown --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext


def samples_with_five_keyframes(n: int):
    from progresslm.bench.format import load_bench
    from progresslm.sim.sim_build import build_small_bench

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
    from progresslm.images import hold, release

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
            hold(path, image)  # in memory, as the scorer holds its frames
            start = time.perf_counter()
            runner.match_one(sample, [*demo, path])
            own.append(time.perf_counter() - start)
            release(path)
            runner.images._index.pop(str(path.resolve()), None)  # the next probe is a new frame
    print(f"matcher online: {1000 * statistics.median(total):.1f} ms per frame (median of {frames}; "
          f"{1000 * statistics.median(own):.1f} ms of it features + comparison, the rest the scorer's image handling and prompt)")


class Nano:
    """The nano backend with the hint provider and image store `progresslm eval` gives it."""

    def __init__(self, root):
        from progresslm.backends.base import BackendOptions
        from progresslm.images import ImageStore
        from progresslm.matcher.hints import HintProvider
        from progresslm.nano.backend_nano import NanoBackend

        self.root = root
        self.provider = HintProvider()
        self.store = ImageStore()
        self.backend = NanoBackend(BackendOptions(device="cpu", dtype="float32", batch_size=1), "two-stage")
        self.cache = self.backend.demo_cache

    def use_cache(self, on: bool) -> None:
        """Switch the demonstration cache, emptied; the matcher's observation features are forgotten too."""
        self.backend.demo_cache = self.cache if on else None
        self.cache.clear()

    def forget_observation(self, sample) -> None:
        """Each timed sample is a new frame for the matcher (its keyframes stay cached, as online)."""
        self.provider.main.images._index.pop(str(sample.image_path(sample.observation, self.root).resolve()), None)

    def request(self, sample, watch=None):
        from progresslm.backends.base import Request
        from progresslm.prompts import build_prompt

        with watch.piece("matcher hints") if watch else nullcontext():
            hints = self.provider.hints([sample], self.root)
        with watch.piece("prompt + image files") if watch else nullcontext():
            prompt = build_prompt(sample, "two-stage", self.root, hints=hints.get(sample.uid))
            images = self.store.encode_all(prompt.images, "pil")
        return Request(sample.uid, 0, prompt, sample, images)


def nano(samples, root, batch: int, modes: list[bool]) -> None:
    runner = Nano(root)
    backend = runner.backend
    for cached in modes:
        runner.use_cache(cached)
        backend.options.batch_size = 1
        list(backend.generate([runner.request(samples[0])]))  # warm-up
        runner.use_cache(cached)
        times, tokens = [], []
        for sample in samples:
            runner.forget_observation(sample)
            start = time.perf_counter()
            reply = next(iter(backend.generate([runner.request(sample)])))[1]
            times.append(time.perf_counter() - start)
            tokens.append(reply.completion_tokens or 0)
        label = "cache on" if cached else "cache off"
        print(f"nano one at a time, {label}: {statistics.median(times):.3f} s per sample (median of {len(samples)}, "
              f"hints included; the first, which computes the demonstration: {times[0]:.3f} s; "
              f"{statistics.mean(tokens):.0f} new tokens on average)")
        backend.options.batch_size = batch
        requests = [runner.request(s) for s in samples]
        runner.use_cache(cached)  # the batches compute the demonstration once, as a benchmark's first batch would
        start = time.perf_counter()
        list(backend.generate(requests))
        print(f"nano batched by {batch}, {label}: {(time.perf_counter() - start) / len(requests):.3f} s per sample "
              "(hints apart)")
    backend.close()


class Stopwatch:
    """Exclusive time per named piece: entering a piece pauses the piece it is inside, so the pieces of one
    run add up to its wall time."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [name, since]

    def start(self, name: str) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1][0]] += now - self._stack[-1][1]
        self._stack.append([name, now])

    def stop(self) -> None:
        now = time.perf_counter()
        name, since = self._stack.pop()
        self.seconds[name] += now - since
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][1] = now

    @contextmanager
    def piece(self, name: str):
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def timed(self, name: str, function):
        def wrapper(*args, **kwargs):
            with self.piece(name):
                return function(*args, **kwargs)

        return wrapper


def watch_model(watch: Stopwatch, backend) -> list:
    """Forward hooks that put the model's pieces on the stopwatch: the vision tower, the projector, and each
    forward of the whole model as prefill (more than one new token) or decode (one token); the embedding
    lookup, the 4 LM layers and the LM head are in those. Returns the hook handles."""
    model = backend.model

    def enter(name):
        return lambda *args: watch.start(name)

    def enter_forward(module, args, kwargs):
        ids = kwargs.get("input_ids")
        watch.start("LM prefill" if ids is None or ids.shape[1] > 1 else "LM decode")

    def leave(*args):
        watch.stop()

    handles = []
    for module, name in ((model.model.vision_tower, "vision tower"), (model.model.multi_modal_projector, "projector")):
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave)]
    handles += [model.register_forward_pre_hook(enter_forward, with_kwargs=True), model.register_forward_hook(leave)]
    return handles


def breakdown(samples, root) -> None:
    """One sample at a time, cache off then on: the mean exclusive ms per sample of each piece."""
    from progresslm.parsing import parse_reply

    runner = Nano(root)
    backend = runner.backend
    # The backend's own steps, timed where they run: chat template and processor (with the cache: the
    # tokenizer, the preprocessing of new images, the digests and the copy of the prefix's KV cache; the
    # tower and a prefix's prefill inside it are claimed by their hooks), and detokenising.
    processor_step = backend._model_inputs
    template = backend.processor.apply_chat_template
    detokenise = backend.processor.tokenizer.decode
    columns = {}
    for cached in (False, True):
        watch = Stopwatch()
        runner.use_cache(cached)
        list(backend.generate([runner.request(samples[0])]))  # warm-up
        runner.use_cache(cached)
        backend._model_inputs = watch.timed("processor", processor_step)
        backend.processor.apply_chat_template = watch.timed("processor", template)
        backend.processor.tokenizer.decode = watch.timed("parsing", detokenise)
        handles = watch_model(watch, backend)
        walls = []
        for sample in samples:
            runner.forget_observation(sample)
            began = time.perf_counter()
            # The root piece gets what no other claims: generate's loop (logits processing, stopping checks,
            # cache bookkeeping between steps) and the backend's glue.
            with watch.piece("generation loop + glue"):
                request = runner.request(sample, watch)
                reply = next(iter(backend.generate([request])))[1]
                with watch.piece("parsing"):
                    parse_reply(reply.text, "two-stage")
            walls.append(time.perf_counter() - began)
        for handle in handles:
            handle.remove()
        del backend._model_inputs, backend.processor.apply_chat_template, backend.processor.tokenizer.decode
        columns[cached] = (watch, sum(walls))
    n = len(samples)
    names = ["matcher hints", "prompt + image files", "processor", "vision tower", "projector", "LM prefill",
             "LM decode", "parsing", "generation loop + glue"]  # fmt: skip
    print(f"nano one sample at a time, mean ms per sample over {n} (5-keyframe demonstration, hints included):")
    print(f"  {'piece':36s} {'cache off':>10s} {'cache on':>10s}")
    for name in names:
        off, on = (1000 * columns[c][0].seconds.get(name, 0.0) / n for c in (False, True))
        print(f"  {name:36s} {off:10.1f} {on:10.1f}")
    sums = [1000 * sum(columns[c][0].seconds.values()) / n for c in (False, True)]
    walls = [1000 * columns[c][1] / n for c in (False, True)]
    print(f"  {'sum of the pieces':36s} {sums[0]:10.1f} {sums[1]:10.1f}")
    print(f"  {'wall time':36s} {walls[0]:10.1f} {walls[1]:10.1f}")
    for cached in (False, True):
        watch = columns[cached][0]
        steps = watch.calls.get("LM decode", 0)
        per_token = 1000 * watch.seconds.get("LM decode", 0.0) / max(steps, 1)
        print(f"  cache {'on' if cached else 'off'}: {steps / n:.1f} decode steps per sample, {per_token:.2f} ms each; "
              f"vision tower {watch.calls.get('vision tower', 0) / n:.2f} calls per sample")
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["matcher", "nano"], choices=["matcher", "nano"])
    parser.add_argument("--n", type=int, default=16, help="samples (nano) and frames (matcher) to time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cache", choices=["both", "on", "off"], default="both",
                        help="nano's demonstration cache: both (off, then on), on or off")
    parser.add_argument("--breakdown", action="store_true",
                        help="nano: where one sample's time goes, per piece, cache off and on (instead of the totals)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    samples, root = samples_with_five_keyframes(args.n)
    print(f"{torch.get_num_threads()} torch threads, {len(samples)} samples with 5 keyframes")
    if "matcher" in args.models:
        matcher_online(samples, root, args.n)
    if "nano" in args.models and args.breakdown:
        breakdown(samples, root)
    elif "nano" in args.models:
        nano(samples, root, args.batch, {"both": [False, True], "on": [True], "off": [False]}[args.cache])


if __name__ == "__main__":
    main()
