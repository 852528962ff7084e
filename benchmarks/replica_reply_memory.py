"""Peak memory of the `openai` backend's client when a replica answers with a 300 MB reply (issue 25: "a 300 MB reply
took the process to 1.48 GB"), under the reply cap (`openai_compat.MAX_REPLY_BYTES`).

    python benchmarks/replica_reply_memory.py                  # 300 MB, every way of sending it
    python benchmarks/replica_reply_memory.py --mb 1000 --modes unsized chunked
    python benchmarks/replica_reply_memory.py --uncapped       # also: the cap raised past the reply (read whole)

Each mode runs in a fresh client process (so `ru_maxrss`, the process's peak resident set, is that mode's alone);
the replica is a stub HTTP server in a process of its own on 127.0.0.1, which streams a valid chat completion whose
content is `--mb` MB of digits, 1 MiB a write, and counts the bytes it got to send before the client hung up.
Modes: `stated` (Content-Length given), `unsized` (no length: the body ends when the connection closes), `chunked`
(Transfer-Encoding: chunked), `gzip` (Content-Encoding: gzip, a few hundred kB on the wire that decode to --mb MB).
The client is `OpenAIBackend.generate` on one request with `--max-retries 0`, so the request ends in the error a
user sees. Printed per mode: peak RSS, its growth over the client's RSS just before the request (after a warm-up
request to the same stub), the tracemalloc peak of Python allocations during the request, bytes the stub sent, wall
time and the error's first words.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.openai_compat import OpenAIBackend
from progresslm.prompts import Prompt

MODES = ("stated", "unsized", "chunked", "gzip")
BLOCK = 2**20  # the stub writes 1 MiB at a time


def reply_parts(size: int) -> tuple[bytes, bytes, int]:
    """Head and tail of a chat completion around `size` bytes of content digits, and the number of digits."""
    head = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "'
    tail = b'"}}]}'
    return head, tail, max(size - len(head) - len(tail), 0)


def body_blocks(size: int):
    head, tail, digits = reply_parts(size)
    yield head
    for start in range(0, digits, BLOCK):
        yield b"9" * min(BLOCK, digits - start)
    yield tail


def serve_stub(size: int, mode: str) -> None:
    """Answer every POST with a `size`-byte reply sent as `mode`; a warm-up POST (path /warm) gets a small one.
    Prints the port, then `sent N` per request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/warm/chat/completions"):
                small = b'{"choices": [{"message": {"content": "42%"}}]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(small)))
                self.end_headers()
                self.wfile.write(small)
                return
            sent = 0
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                blocks = body_blocks(size)
                if mode == "stated":
                    self.send_header("Content-Length", str(size))
                elif mode == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                elif mode == "gzip":
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Connection", "close")
                    blocks = gzipped(blocks)
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                for block in blocks:
                    if mode == "chunked":
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    else:
                        self.wfile.write(block)
                    sent += len(block)
                if mode == "chunked":
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client hung up: what the cap should make it do
                pass
            finally:
                self.close_connection = True
                print(f"sent {sent}", flush=True)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def gzipped(blocks):
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for block in blocks:
        packed = packer.compress(block)
        if packed:
            yield packed
    yield packer.flush()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def client(size: int, mode: str, cap: int | None) -> dict:
    stub = subprocess.Popen([sys.executable, __file__, "--stub", mode, "--bytes", str(size)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        port = int(stub.stdout.readline())
        base = f"http://127.0.0.1:{port}/v1"
        prompt = Prompt(messages=[{"role": "user", "content": [{"type": "text", "text": "progress?"}]}], images=[],
                        hash="0")  # fmt: skip
        request = Request("bench-0", 0, prompt, None)  # the sample is not sent, only its uid
        options = BackendOptions(model="m", base_url=base + "/warm", api_key_env="PROGRESSLM_BENCH_NO_KEY",
                                 max_retries=0, timeout_s=120.0)  # fmt: skip
        warm = OpenAIBackend(options, "direct")
        assert [reply.text for _, reply in warm.generate([request])] == ["42%"]
        warm.close()
        backend = OpenAIBackend(BackendOptions(**{**options.__dict__, "base_url": base}), "direct")
        if cap is not None:
            backend.max_reply_bytes = cap
        before = rss_mb()
        tracemalloc.start()
        started = time.perf_counter()
        try:
            got = [reply.text for _, reply in backend.generate([request])]
            outcome = f"answered, {len(got[0]):,} characters"
        except BackendError as error:
            outcome = str(error).split("; last error: ", 1)[-1].split(". Check", 1)[0]
        took = time.perf_counter() - started
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        backend.close()
        line = stub.stdout.readline().split()
        return {"mode": mode, "peak_rss_mb": rss_mb(), "rss_before_mb": before, "traced_peak_mb": traced / 2**20,
                "stub_sent_mb": int(line[1]) / 1e6 if len(line) == 2 else None, "wall_s": took, "outcome": outcome}
    finally:
        stub.kill()
        stub.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=300.0, help="reply size in MB (10^6 bytes)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--uncapped", action="store_true",
                        help="also run `unsized` with the cap raised past the reply (the old behaviour: read whole)")
    parser.add_argument("--stub", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        serve_stub(args.bytes, args.stub)
        return
    if args.client:
        print(json.dumps(client(args.bytes, args.client, args.cap)))
        return
    size = int(args.mb * 1e6)
    runs = [(mode, None) for mode in args.modes] + ([("unsized", size + 2**20)] if args.uncapped else [])
    print(f"reply of {size / 1e6:,.0f} MB; cap {OpenAIBackend.max_reply_bytes / 2**20:g} MiB unless said")
    print(f"{'mode':<18} {'peak RSS':>9} {'growth':>8} {'traced':>8} {'stub sent':>10} {'wall':>7}  outcome")
    for mode, cap in runs:
        command = [sys.executable, __file__, "--client", mode, "--bytes", str(size)]
        if cap is not None:
            command += ["--cap", str(cap)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        name = mode + (" (no cap)" if cap else "")
        sent = "?" if result["stub_sent_mb"] is None else f"{result['stub_sent_mb']:.2f} MB"
        print(f"{name:<18} {result['peak_rss_mb']:>6.0f} MB {result['peak_rss_mb'] - result['rss_before_mb']:>5.0f} MB "
              f"{result['traced_peak_mb']:>5.1f} MB {sent:>10} {result['wall_s']:>6.2f}s  {result['outcome']}")


if __name__ == "__main__":
    main()
