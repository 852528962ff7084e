"""Load test for `progresslm serve`: N concurrent clients for a fixed time, then throughput, latency,
errors and memory growth.

    python benchmarks/serve_load.py --backend constant --clients 16 --seconds 20
    python benchmarks/serve_load.py --backend hf --model /path/to/model --clients 8 --seconds 30
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 8      # a server already running

Without --url the server runs in this process on a free loopback port (real uvicorn, real sockets),
so the RSS figures are the server's memory plus the clients' (small and constant). Each request is
a progresslm two-stage prompt with a visual demonstration (--keyframes images) and one observation,
sent as the `openai` backend sends it; every client cycles through --distinct observations.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx


def rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def png_url(level: int, size: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (level % 256, (3 * level) % 256, (7 * level) % 256)).save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


def bodies(keyframes: int, distinct: int, size: int, max_tokens: int) -> list[dict]:
    """Chat bodies as `progresslm eval --backend openai` sends them."""
    from progresslm.backends.openai_compat import to_openai_messages
    from progresslm.prompts import build_prompt
    from progresslm.types import Demo, Modality, Sample

    demo = Demo(Modality.VISUAL, tuple(f"k{i}.png" for i in range(keyframes)), total_steps=keyframes - 1)
    sample = Sample("load", "load", "put the block in the box", demo, "obs.png", None, None, labelled=False)
    prompt = build_prompt(sample, "two-stage")
    keyframe_urls = [png_url(40 * i, size) for i in range(keyframes)]
    out = []
    for k in range(distinct):
        messages = to_openai_messages(prompt.messages, [*keyframe_urls, png_url(11 * k + 5, size)])
        out.append({"model": "load", "messages": messages, "max_tokens": max_tokens, "temperature": 0.0})
    return out


def client_loop(url: str, payloads: list[dict], stop_at: float, latencies: list, errors: list, lock) -> None:
    with httpx.Client(timeout=120) as http:
        k = 0
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            try:
                reply = http.post(f"{url}/v1/chat/completions", json=payloads[k % len(payloads)])
                ok = reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] is not None
                what = None if ok else f"HTTP {reply.status_code}: {reply.text[:200]}"
            except (httpx.HTTPError, ValueError, KeyError) as error:
                what = f"{type(error).__name__}: {error}"
            elapsed = time.perf_counter() - began
            with lock:
                (errors.append(what) if what else latencies.append(elapsed))
            k += 1


def drive(url: str, args: argparse.Namespace) -> dict:
    payloads = bodies(args.keyframes, args.distinct, args.image_size, args.max_tokens)
    with httpx.Client(timeout=300) as http:  # warm-up: first calls load lazily initialised parts
        for payload in payloads[: min(3, len(payloads))]:
            http.post(f"{url}/v1/chat/completions", json=payload).raise_for_status()
    rss_before = rss_mb()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds
    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(url, payloads, stop_at, latencies, errors, lock))
               for _ in range(args.clients)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    health = httpx.get(f"{url}/health", timeout=30).json()
    rss_after = rss_mb()
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")  # noqa: E731
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * pick(0.50),
        "p99_ms": 1000 * pick(0.99),
        "mean_ms": 1000 * statistics.fmean(ordered) if ordered else float("nan"),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "health": health,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server's root, e.g. http://127.0.0.1:8000 (default: start one here)")
    parser.add_argument("--backend", default="constant")
    parser.add_argument("--model", help="model directory (hf, nano)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--keyframes", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=16, help="different observations the clients cycle through")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)

    server = None
    if args.url:
        url, where = args.url.rstrip("/"), args.url
    else:
        from progresslm.backends.base import BackendOptions
        from progresslm.serve import ServeConfig, create_app
        from progresslm.serve.runner import BackgroundServer

        options = BackendOptions(model=args.model, device=args.device, batch_size=args.max_batch)
        config = ServeConfig(backend=args.backend, options=options, port=0, max_batch=args.max_batch,
                             batch_wait_ms=args.batch_wait_ms)  # fmt: skip
        server = BackgroundServer(create_app(config)).start()
        url, where = server.url, f"in-process {server.url}"
    try:
        result = drive(url, args)
    finally:
        if server is not None:
            server.stop()
    health = result["health"]
    batching = health.get("batching", {})
    print(f"server       {where}  model={health.get('model')}  backend={health.get('backend')}")
    print(f"load         {args.clients} clients x {args.seconds:g} s, {args.keyframes} keyframes + 1 observation "
          f"of {args.image_size}px per request, max_tokens {args.max_tokens}")
    print(f"requests     {result['requests']} in {result['wall_s']:.1f} s = {result['rps']:.1f} requests/s")
    print(f"latency      p50 {result['p50_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms   mean {result['mean_ms']:.1f} ms")
    print(f"errors       {result['errors']}" + (f"  first: {result['first_error']}" if result["errors"] else ""))
    print(f"batching     mean {batching.get('mean_batch')}  largest {batching.get('largest_batch')}  "
          f"batches {batching.get('batches')}")
    if result["rss_before_mb"] is not None and server is not None:
        growth = result["rss_after_mb"] - result["rss_before_mb"]
        print(f"memory       RSS {result['rss_before_mb']:.0f} MB -> {result['rss_after_mb']:.0f} MB "
              f"(growth {growth:+.1f} MB, server and clients in this process)")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
