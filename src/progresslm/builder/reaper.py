"""Ties a local Ray instance's processes to the driver that started it (issue 25 item 7). A driver killed with
`kill -9` cannot run `ray.shutdown`: Ray's gcs_server and raylet die with it (Ray makes them share its fate), but
the raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) are re-parented to init and lived on. `watch(pid)`
starts a small watcher process that records every descendant of the driver while it lives, and when the driver is
gone (its pipe closes) kills the recorded processes that still run (checked by start time, so a reused pid is never
hit). Run as `python -m progresslm.builder.reaper PID` with the pipe on its stdin."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _started(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]  # starttime, in clock ticks since boot
    except OSError:
        return None


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def watch(pid: int) -> subprocess.Popen | None:
    """Start the watcher of `pid` (Linux only: it reads /proc; elsewhere None). Keep the returned Popen: its stdin is
    the pipe whose end tells the watcher the driver is gone; `release` closes it after a clean shutdown."""
    if not os.path.isdir("/proc"):
        return None
    return subprocess.Popen([sys.executable, "-m", "progresslm.builder.reaper", str(pid)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def release(watcher: subprocess.Popen | None) -> None:
    """After `ray.shutdown`: the watcher ends, killing whatever of the instance is left."""
    if watcher is not None and watcher.stdin is not None:
        watcher.stdin.close()


def main(pid: int) -> None:
    seen: dict[int, str] = {}
    me = os.getpid()
    while True:
        for child in descendants(pid) - {me}:
            if child not in seen:
                stamp = _started(child)
                if stamp is not None:
                    seen[child] = stamp
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed the pipe, or died
    time.sleep(1.0)  # a clean shutdown's processes end by themselves
    for child, stamp in seen.items():
        if _started(child) == stamp:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
