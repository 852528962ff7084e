"""Running many independent jobs through one function: a local process pool, or a Ray cluster.

`sim build` and `data build` hand their units here and save each result as it comes back, so a killed build resumes
with either engine. The function must be a module-level function (workers import it by name) and each job
picklable. Whatever the function keeps in module globals (the simulator's environments) lives as long as the worker
process: across jobs, in a pool process and in a Ray worker alike.

- "local": `workers` spawned processes (in this process when `workers` <= 1).
- "ray": one Ray task per job, on the cluster at `address` (or `$RAY_ADDRESS`), else on a local Ray instance with
  `workers` CPUs. Tasks run wherever the cluster has a free CPU: whatever they write must go to storage every node
  sees.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from progresslm.builder import reaper

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_HINT = "pip install -e '.[ray]' (in the progresslm clone)"


class EngineError(RuntimeError):
    """The engine cannot run here (Ray missing, no cluster at the address)."""


class JobError(RuntimeError):
    """A job raised: names the job, the error's type and message; `remote_traceback` holds where it was raised."""

    def __init__(self, name: str, kind: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{name} failed: {kind}: {message}")
        self.name, self.kind, self.message, self.remote_traceback = name, kind, message, remote_traceback


class Finished(NamedTuple):
    index: int  # position of the job in the list given
    result: Any


@dataclass(frozen=True)
class _Failure:
    """An exception as text: it crosses process boundaries whatever the exception holds."""

    kind: str
    message: str
    traceback: str


def engine_problem(engine: str, address: str | None = None) -> str | None:
    """What is wrong with these engine settings, or None (cheap: does not import or start Ray).

    >>> engine_problem("local"), engine_problem("spark")
    (None, "unknown engine 'spark'; valid engines: local, ray")
    """
    if engine not in ENGINES:
        return f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}"
    if address and engine != "ray":
        return f"--ray-address {address} is given but the engine is {engine}: add --engine ray"
    if engine == "ray" and not _ray_installed():
        return f"--engine ray: ray is not installed; {RAY_HINT}"
    return None


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # sys.modules["ray"] is None: importing ray is blocked in this process
        return False


# The client preface of HTTP/2 and an empty SETTINGS frame: Ray's head (its GCS, a gRPC server) answers with a
# SETTINGS frame of its own at once, token authentication or not.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PROBE_TIMEOUT_S = 5.0  # connect, then answer: well inside the 15 s a wrong address may cost


def _check_reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast on a HOST:PORT where nothing answers, or where something that is not Ray's head listens (Ray itself
    retries for minutes: a plain TCP listener held `ray.init` for 123 s); other forms ("auto", "ray://...") are left
    to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    hint = (f"start one with `ray start --head --port {port}` on {host}, or give the head's address (--ray-address "
            "or $RAY_ADDRESS)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            head = conn.recv(9)
    except socket.timeout:
        raise EngineError(f"{address} accepts connections but does not answer as a Ray cluster's head (no reply in "
                          f"{timeout:g} s); {hint}") from None
    except OSError as error:
        raise EngineError(f"no Ray cluster answers at {address} ({error}): {hint}") from error
    if len(head) < 9 or head[3] != 0x04:  # frame type 4: SETTINGS
        raise EngineError(f"{address} answers, but not as a Ray cluster's head (not gRPC: {head[:16]!r}); {hint}")


def _call(function: Callable, index: int, job: Any) -> tuple[int, Any, _Failure | None]:
    """Runs in the worker: the job's result, or its error as text (tagged with the job's index either way)."""
    try:
        return index, function(job), None
    except Exception as error:  # reported to the caller with the job's name, whatever it was
        return index, None, _Failure(type(error).__name__, str(error), traceback.format_exc())


def _call_packed(packed: tuple[Callable, int, Any]) -> tuple[int, Any, _Failure | None]:
    return _call(*packed)


def run_jobs(function: Callable[[Any], Any], jobs: Sequence[Any], names: Sequence[str], engine: str = "local",
             workers: int = 1, address: str | None = None) -> Iterator[Finished]:
    """`function(job)` for every job, yielded as `Finished(index, result)` in the order they finish.

    `names[i]` names job i in errors (`JobError`: the first job that raises stops the run). Close the iterator (or
    run it to the end) to stop the workers: `with contextlib.closing(run_jobs(...)) as finished:`.
    """
    problem = engine_problem(engine, address)
    if problem:
        raise EngineError(problem)
    if len(names) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(names)} names")
    if not jobs:
        return
    if engine == "ray":
        yield from _run_ray(function, jobs, names, workers, address or os.environ.get("RAY_ADDRESS") or None)
    elif workers <= 1:
        for index, job in enumerate(jobs):
            yield _finished(_call(function, index, job), names)
    else:
        yield from _run_pool(function, jobs, names, workers)


def _finished(outcome: tuple[int, Any, _Failure | None], names: Sequence[str]) -> Finished:
    index, result, failure = outcome
    if failure is not None:
        raise JobError(names[index], failure.kind, failure.message, failure.traceback)
    return Finished(index, result)


def _run_pool(function: Callable, jobs: Sequence[Any], names: Sequence[str], workers: int) -> Iterator[Finished]:
    # spawn, not fork: a forked child would inherit this process's GL contexts and threads
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)))
    try:
        for outcome in pool.imap_unordered(_call_packed, [(function, i, job) for i, job in enumerate(jobs)]):
            yield _finished(outcome, names)
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def _run_ray(function: Callable, jobs: Sequence[Any], names: Sequence[str], workers: int,
             address: str | None) -> Iterator[Finished]:
    import ray  # lazy: ray (the [ray] extra)

    started = not ray.is_initialized()  # a connection this process made already is reused, and left open
    watcher = None
    if started:
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address)
            else:
                # the instance's agents end with this process, even on kill -9: watched from before they start, so a
                # driver killed while ray.init runs leaves none either
                watcher = reaper.watch(os.getpid())
                ray.init(num_cpus=max(workers, 1), include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            reaper.release(watcher)
            if not address:
                raise EngineError(f"could not start a local Ray instance: {error}") from error
            raise EngineError(
                f"could not connect to the Ray cluster at {address}: {error}. Start one with `ray start --head` and "
                "give its address (--ray-address HEAD:6379 or $RAY_ADDRESS); a cluster with token authentication "
                "(Ray's default from 2.59) also needs RAY_AUTH_MODE=token and its token here (~/.ray/auth_token "
                "or $RAY_AUTH_TOKEN; `ray get-auth-token` on the head prints it)"
            ) from error
    remote = ray.remote(_call)
    pending = {remote.remote(function, i, job): i for i, job in enumerate(jobs)}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as error:  # the worker died (a crash, out of memory), not the job
                lines = str(error).strip().splitlines() or ["no message"]
                raise JobError(names[index], type(error).__name__, lines[-1]) from error
            yield _finished(outcome, names)
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()
            reaper.release(watcher)
