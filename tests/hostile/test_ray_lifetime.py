"""Issue 25 item 7: a driver that started a local Ray instance and is killed with `kill -9` leaves no Ray process
behind. Before, ray::DashboardAgent and ray::RuntimeEnvAgent (the raylet's agents) were re-parented to init and
ran on. A real local Ray instance, as tests/test_engines.py uses."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from progresslm.builder.reaper import _started, descendants

pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")]

DRIVER = """
import time
from progresslm.builder import engines

def slow(x):
    time.sleep(600)
    return x

for finished in engines.run_jobs(slow, [1, 2], ["a", "b"], engine="ray", workers=2):
    print(finished, flush=True)
"""


def test_ray_processes_end_with_a_driver_killed_with_kill_9():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        names: dict[int, str] = {}
        while time.monotonic() < deadline:  # until the raylet's agents run
            names = {}
            for pid in descendants(driver.pid):
                try:
                    names[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
                except OSError:
                    pass
            running = " ".join(names.values())
            # the agents run, the jobs run (ray.init has returned) and the driver's watcher runs
            if ("DashboardAgent" in running or "dashboard/agent.py" in running) and "ray::_call" in running:
                break
            time.sleep(0.5)
        assert names, "the driver started no Ray process"
        time.sleep(2)
        tracked = {pid: _started(pid) for pid in descendants(driver.pid)}
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 30
    alive = tracked
    while time.monotonic() < deadline:
        alive = {pid: stamp for pid, stamp in tracked.items() if stamp is not None and _started(pid) == stamp}
        if not alive:
            break
        time.sleep(0.5)
    left = {pid: open(f"/proc/{pid}/cmdline", "rb").read()[:80] for pid in alive if os.path.exists(f"/proc/{pid}")}
    for pid in alive:  # leave nothing behind on the machine even when the test fails
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not alive, f"left running after kill -9 of the driver: {left}"
