"""`progresslm eval --backend openai` across 1, 2 and 3 replicas: samples/s per number of replicas, and a run in
which one replica is killed halfway.

    python benchmarks/eval_replicas.py                          # retrieval replicas, 400 samples of the example
    python benchmarks/eval_replicas.py --backend constant --batch-wait-ms 40 --samples 1200

Each replica is a `progresslm serve --port 0` process on loopback (one CPU thread each: OMP_NUM_THREADS=1); the
client is `progresslm eval --backend openai --base-url URL1 URL2 ... --concurrency C` in its own process, on a
seeded subset (`--limit`) of the drawn example benchmark (`progresslm bench example`, built in a temporary
folder). samples/s is the request phase: the eval's wall time minus that of the same command re-run with every
reply already saved (loading, prompts, metrics and report), so the fixed start-up cost does not hide the scaling;
a few requests on every replica first warm it up.
For the kill run, one replica gets SIGKILL once half of the replies are saved; the run must still answer every
sample (exit 0, one reply per sample in results.jsonl).

The `retrieval` backend does real work per request (EfficientNet-Lite0 features of each image), so replicas
only help as far as there are free cores: on a 2-core machine the client and the servers share them. With
`--backend constant --batch-wait-ms W` each server holds every batch W ms without using the CPU, a stand-in
for a model server that is busy elsewhere (a GPU): that shows how far the spreading itself scales.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from progresslm.serve.runner import ServerProcess


def start_replicas(count: int, args: argparse.Namespace) -> list[ServerProcess]:
    serve_args = ["--backend", args.backend, "--device", "cpu", "--batch-size", str(args.batch_size),
                  "--batch-wait-ms", str(args.batch_wait_ms)]  # fmt: skip
    servers = [ServerProcess(serve_args) for _ in range(count)]  # started together, loaded in parallel
    try:
        for server in servers:
            server.wait_ready(args.start_timeout)
    except RuntimeError as err:
        stop_all(servers)
        sys.exit(f"error: {err}")
    return servers


def stop_all(servers: list[ServerProcess]) -> None:
    for server in servers:
        server.stop(timeout_s=30)


BENCH_FILES = ("visual_same_view", "visual_cross_view", "visual-unanswerable", "text-normal", "text-unanswerable")


def eval_command(bench: Path, out: Path, urls: list[str], args: argparse.Namespace,
                 first: int | None = None) -> list[str]:  # fmt: skip
    """`progresslm eval` on the example: a seeded subset of about --samples, or the first `first` samples."""
    files = [str(bench / f"{name}.jsonl") for name in BENCH_FILES]
    subset = ["--first", str(first)] if first else ["--limit", str(args.samples)]
    return [sys.executable, "-m", "progresslm.cli.main", "eval", "--bench", *files, "--image-root",
            str(bench / "images"), "--backend", "openai", "--model", "any", "--base-url", *urls,
            "--concurrency", str(args.concurrency), *subset, "--out", str(out), "--quiet", "--no-plots",
            "--no-floors", "--bootstrap", "0"]  # fmt: skip


def saved_replies(out: Path) -> int:
    path = out / "results.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def run_eval(command: list[str], out: Path, kill: ServerProcess | None = None, kill_at: int = 0) -> tuple[float, int]:
    """Wall seconds and exit code of one eval; with `kill`, that server gets SIGKILL once `kill_at` replies are
    saved."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while kill is not None and process.poll() is None:
        if saved_replies(out) >= kill_at:
            kill.process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    _, errors = process.communicate()
    wall = time.perf_counter() - began
    if process.returncode != 0:
        print(f"eval failed (exit {process.returncode}):\n{errors}", file=sys.stderr)
    return wall, process.returncode


def measure(count: int, bench: Path, work: Path, args: argparse.Namespace, kill_halfway: bool = False) -> dict:
    servers = start_replicas(count, args)
    out = work / f"run-{count}{'-kill' if kill_halfway else ''}"
    try:
        urls = [f"{s.url}/v1" for s in servers]
        # Warm-up: a few requests on every replica first (a server loads parts of its model on the first request).
        run_eval(eval_command(bench, work / f"warm-{out.name}", urls, args, first=4 * count), work / f"warm-{out.name}")
        command = eval_command(bench, out, urls, args)
        victim = servers[-1] if kill_halfway else None
        wall, code = run_eval(command, out, victim, kill_at=args.samples // 2)
        fixed, _ = run_eval(command, out)  # everything saved: only the fixed cost is left
    finally:
        stop_all(servers)
    stats_path = out / "backend_stats.json"
    stats = json.loads(stats_path.read_text())["replicas"] if stats_path.exists() else []
    n = json.loads((out / "config.json").read_text())["n_samples"] if (out / "config.json").exists() else 0
    requests_s = max(wall - fixed, 1e-9)
    return {"replicas": count, "exit": code, "samples": n, "answered": saved_replies(out), "wall_s": wall,
            "fixed_s": fixed, "samples_per_s": saved_replies(out) / requests_s, "stats": stats}  # fmt: skip


def print_row(result: dict, label: str) -> None:
    print(f"{label:<26} {result['answered']:>4}/{result['samples']:<4} answered  exit {result['exit']}  "
          f"eval {result['wall_s']:6.1f} s (fixed part {result['fixed_s']:4.1f} s)  "
          f"{result['samples_per_s']:7.1f} samples/s")  # fmt: skip
    for s in result["stats"]:
        latency = "-" if s["mean_latency_s"] is None else f"{1000 * s['mean_latency_s']:.0f} ms"
        print(f"    {s['url']:<44} requests {s['requests']:>4}  answered {s['answered']:>4}  "
              f"failures {s['failures']:>2}  mean latency {latency}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="retrieval", help="backend of each replica (progresslm serve)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3], help="numbers of replicas to measure")
    parser.add_argument("--samples", type=int, default=400, help="about this many samples (eval --limit)")
    parser.add_argument("--concurrency", type=int, default=4, help="eval --concurrency: requests in flight per replica")
    parser.add_argument("--batch-size", type=int, default=8, help="serve --batch-size")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="serve --batch-wait-ms")
    parser.add_argument("--no-kill", action="store_true", help="skip the run that kills a replica halfway")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds a replica gets to load")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = "1"  # one core per replica (the servers inherit it)
    from progresslm.bench.example import build_example

    work = Path(tempfile.mkdtemp(prefix="progresslm-replicas-"))
    per_colour = max(2, -(-args.samples // 288))  # the example gives 288 samples per task of each colour
    bench = build_example(work / "bench", seed=0, tasks_per_colour=per_colour).root
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; each replica is `progresslm "
          f"serve --backend {args.backend} --batch-wait-ms {args.batch_wait_ms:g}` with one CPU thread; the client "
          f"is `progresslm eval --backend openai --concurrency {args.concurrency}` (per replica)")  # fmt: skip
    if (os.cpu_count() or 1) < max(args.replicas) + 1:
        print(f"note: {os.cpu_count()} cores for up to {max(args.replicas)} replicas and the client: replicas that "
              "need the CPU compete for it, so CPU-bound backends scale at most to the cores there are")
    results = []
    try:
        for count in args.replicas:
            results.append(measure(count, bench, work, args))
            print_row(results[-1], f"{count} replica(s)")
        if not args.no_kill:
            count = max(max(args.replicas), 2)
            killed = measure(count, bench, work, args, kill_halfway=True)
            print_row(killed, f"{count}, one killed halfway")
            results.append(killed)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    base = results[0]["samples_per_s"]
    print("speed-up over 1 replica: " + ", ".join(
        f"{r['replicas']}{' (one killed)' if r is results[-1] and not args.no_kill else ''}: "
        f"{r['samples_per_s'] / base:.2f}x" for r in results))  # fmt: skip
    return 0 if all(r["exit"] == 0 and r["answered"] == r["samples"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
