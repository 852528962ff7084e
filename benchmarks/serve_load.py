"""Load test for `progresslm serve`: N concurrent clients on loopback for a fixed time, then
throughput, latency, errors and the server's memory growth.

    python benchmarks/serve_load.py --backend constant --clients 16 --seconds 20
    python benchmarks/serve_load.py --backend hf --model /path/to/model --clients 8 --seconds 30
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --pid 1234 --clients 8    # a server already running

Without --url, `progresslm serve --port 0` is started in its own process on a free loopback port
(real uvicorn, real sockets, the clients' CPU and memory apart from the server's), stopped with
SIGINT at the end (its exit code is printed: 0 is a graceful shutdown). Memory is the server
process's resident set (/proc/PID/status) after the warm-up and after the load. Only loopback URLs
are accepted. Each request is a progresslm two-stage prompt with a visual demonstration
(--keyframes images) and one observation, sent as the `openai` backend sends it; every client cycles
through --distinct observations. The run is bounded: no request starts after --seconds, and each
has --timeout seconds to finish.
"""

from __future__ import annotations

import argparse
import base64
import io
import ipaddress
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from progresslm.serve.runner import ServerProcess

LOOPBACK_NAMES = ("localhost",)


def rss_mb(pid: int | None) -> float | None:
    """The resident memory of process `pid` in MB (None where /proc cannot say)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) process `pid` has used, every thread included (None where /proc cannot say).

    On a machine shared with other work, CPU time per request says more than wall time."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def loopback_url(url: str) -> str:
    """`url` without a trailing slash, if its host is a loopback address; else exit with why."""
    host = urlsplit(url).hostname or ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host.lower() in LOOPBACK_NAMES
    if not local:
        sys.exit(f"error: --url {url!r}: this load test only drives servers on loopback (127.0.0.1, ::1, localhost)")
    return url.rstrip("/")


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


def client_loop(url: str, payloads: list[dict], stop_at: float, timeout_s: float, latencies: list, errors: list,
                lock) -> None:  # fmt: skip
    with httpx.Client(timeout=timeout_s) as http:
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


def drive(url: str, pid: int | None, args: argparse.Namespace) -> dict:
    payloads = bodies(args.keyframes, args.distinct, args.image_size, args.max_tokens)
    with httpx.Client(timeout=300) as http:  # warm-up: first calls load lazily initialised parts
        for payload in payloads[: min(3, len(payloads))]:
            http.post(f"{url}/v1/chat/completions", json=payload).raise_for_status()
    rss_before, cpu_before, load_before = rss_mb(pid), cpu_s(pid), os.getloadavg()[0]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds
    began = time.perf_counter()
    loop_args = (url, payloads, stop_at, args.timeout, latencies, errors, lock)
    threads = [threading.Thread(target=client_loop, args=loop_args) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    health = httpx.get(f"{url}/health", timeout=30).json()
    rss_after, cpu_after = rss_mb(pid), cpu_s(pid)
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
        "server_cpu_s": None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        "load_before": load_before,
        "health": health,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server's root on loopback, e.g. http://127.0.0.1:8000 "
                        "(default: start `progresslm serve` here)")  # fmt: skip
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory figures")
    parser.add_argument("--backend", default="constant")
    parser.add_argument("--model", help="model directory (hf, nano)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the clients send requests")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--keyframes", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=16, help="different observations the clients cycle through")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds the server gets to load its model")
    args = parser.parse_args(argv)

    server = None
    if args.url:
        url, pid, where = loopback_url(args.url), args.pid, args.url
    else:
        serve_args = ["--backend", args.backend, "--device", args.device, "--batch-size", str(args.max_batch),
                      "--batch-size", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]  # fmt: skip
        if args.model:
            serve_args += ["--model", args.model]
        server = ServerProcess(serve_args)
        try:
            server.wait_ready(args.start_timeout)
        except RuntimeError as err:
            sys.exit(f"error: {err}")
        url, pid, where = server.url, server.process.pid, f"progresslm serve, pid {server.process.pid}, {server.url}"
    try:
        result = drive(url, pid, args)
    finally:
        # a request the clients gave up on is still answered: give the drain as long as a request
        exit_code = server.stop(timeout_s=max(args.timeout, 60.0)) if server is not None else None
    health = result["health"]
    batching = health.get("batching", {})
    print(f"server       {where}  model={health.get('model')}  backend={health.get('backend')}")
    print(f"load         {args.clients} clients x {args.seconds:g} s, {args.keyframes} keyframes + 1 observation "
          f"of {args.image_size}px per request, max_tokens {args.max_tokens}")
    print(f"requests     {result['requests']} in {result['wall_s']:.1f} s = {result['rps']:.1f} requests/s")
    print(f"latency      p50 {result['p50_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms   "
          f"mean {result['mean_ms']:.1f} ms")
    print(f"errors       {result['errors']}" + (f"  first: {result['first_error']}" if result["errors"] else ""))
    print(f"batching     mean {batching.get('mean_batch')}  largest {batching.get('largest_batch')}  "
          f"batches {batching.get('batches')}")
    if result["rss_before_mb"] is not None and result["rss_after_mb"] is not None:
        growth = result["rss_after_mb"] - result["rss_before_mb"]
        print(f"memory       server RSS {result['rss_before_mb']:.0f} MB after warm-up -> "
              f"{result['rss_after_mb']:.0f} MB after the load (growth {growth:+.1f} MB)")
    else:
        print("memory       not measured (give --pid with --url)")
    if result["server_cpu_s"] is not None and result["requests"]:
        print(f"server CPU   {result['server_cpu_s']:.1f} s during the load = "
              f"{1000 * result['server_cpu_s'] / result['requests']:.1f} ms per request")
    print(f"machine      {os.cpu_count()} CPUs, load average {result['load_before']:.1f} when the load began")
    if server is not None:
        print(f"shutdown     SIGINT -> exit code {exit_code}" + ("" if exit_code == 0 else " (not graceful)"))
    graceful = server is None or exit_code == 0
    return 0 if result["errors"] == 0 and graceful else 1


if __name__ == "__main__":
    sys.exit(main())
