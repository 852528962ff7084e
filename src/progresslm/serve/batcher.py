"""One worker thread owns the backend; requests from every caller queue up and are answered in batches.

A model is not thread-safe and answers a batch of N in much less than N times the time of one, so
the worker takes the first waiting request, waits up to `wait_s` for company (up to `max_batch`
requests with the same generation settings), and calls `backend.generate` once for them all.
Callers get a `concurrent.futures.Future` per request; `BatchedBackend` wraps this as a `Backend`,
so a `ProgressScorer` (and so a `ProgressMonitor`) shares the queue with the chat endpoint.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass

from progresslm.backends.base import Backend, Reply, Request

log = logging.getLogger("progresslm.serve")


class QueueFull(RuntimeError):
    """The queue holds `max_queue` requests already: the caller should retry later (HTTP 503)."""


class ShuttingDown(RuntimeError):
    """The server is stopping and takes no new requests."""


@dataclass(frozen=True)
class Settings:
    """Generation settings of one request; only requests with equal settings share a batch."""

    mode: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def normalised(self) -> Settings:
        """Greedy decoding ignores top_p and seed, so greedy requests batch together whatever they sent."""
        if self.temperature > 0:
            return self
        return dataclasses.replace(self, top_p=1.0, seed=0)


@dataclass
class Job:
    request: Request
    settings: Settings
    future: Future


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    largest: int = 0
    busy_s: float = 0.0
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "largest_batch": self.largest,
            "mean_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
            "busy_s": round(self.busy_s, 3),
            "batch_sizes": {str(size): count for size, count in sorted(self.sizes.items())},
        }


class Batcher:
    """The request queue and the worker thread that drains it into `backend.generate` calls."""

    def __init__(self, backend: Backend, max_batch: int = 8, wait_s: float = 0.005, max_queue: int = 256):
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._base_options = backend.options
        self._base_mode = backend.mode
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def default_settings(self, mode: str | None = None) -> Settings:
        o = self._base_options
        return Settings(mode or self._base_mode, o.temperature, o.top_p, o.max_new_tokens, o.seed)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="progresslm-serve-worker", daemon=True)
                self._thread.start()

    def submit(self, requests: Sequence[Request], settings: Settings) -> list[Future]:
        """Queue requests (all or none); one future per request, resolving to its `Reply`."""
        self.start()
        settings = settings.normalised()
        jobs = [Job(request, settings, Future()) for request in requests]
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) + len(jobs) > self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are queued already (--max-queue {self.max_queue})")
            self._queue.extend(jobs)
            self._cond.notify()
        return [job.future for job in jobs]

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest job and up to max_batch - 1 more with its settings."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            settings = self._queue[0].settings
            batch, rest = [], collections.deque()
            while self._queue:
                job = self._queue.popleft()
                if len(batch) < self.max_batch and job.settings == settings:
                    batch.append(job)
                else:
                    rest.append(job)
            self._queue = rest
        # Callers that went away before their turn cancelled their futures: skip them.
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._answer(batch)

    def _answer(self, batch: list[Job]) -> None:
        began = time.perf_counter()
        try:
            replies = self._generate(batch)
        except BaseException as error:  # noqa: BLE001 - the worker must outlive any backend failure
            if len(batch) == 1:
                log.warning("request %s failed: %s: %s", batch[0].request.uid, type(error).__name__, error)
                batch[0].future.set_exception(error)
            else:
                # One bad request should not fail its neighbours: answer each alone.
                log.warning("a batch of %d failed (%s: %s); retrying one by one", len(batch), type(error).__name__, error)
                for job in batch:
                    self._answer([job])
            return
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        self.stats.sizes[len(batch)] += 1
        self.stats.busy_s += time.perf_counter() - began
        for index, job in enumerate(batch):
            reply = replies.get(index)
            if reply is None:
                job.future.set_exception(RuntimeError("the backend returned no reply for this request"))
            else:
                job.future.set_result(reply)

    def _generate(self, batch: list[Job]) -> dict[int, Reply]:
        settings = batch[0].settings
        backend = self.backend
        # The worker is the only thread that touches the backend, so the options can be set per batch.
        backend.options = dataclasses.replace(
            self._base_options,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
        )
        backend.mode = settings.mode
        return dict(backend.generate([job.request for job in batch]))

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let queued ones finish for up to `drain_timeout_s`, cancel the rest."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + drain_timeout_s
        while self._thread is not None and self._thread.is_alive() and self._queue and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._cond:
            dropped, self._queue = list(self._queue), collections.deque()
        for job in dropped:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the server shut down before this request was answered"))
        if self._thread is not None:
            self._thread.join(timeout=max(deadline - time.monotonic(), 1.0))


class BatchedBackend(Backend):
    """A `Backend` whose `generate` goes through a `Batcher`: what a scorer holds inside the server."""

    def __init__(self, batcher: Batcher, settings: Settings):
        options = dataclasses.replace(batcher.backend.options, temperature=settings.temperature, top_p=settings.top_p,
                                      max_new_tokens=settings.max_new_tokens, seed=settings.seed)  # fmt: skip
        super().__init__(options, settings.mode)
        self.batcher = batcher
        self.settings = settings
        self.image_format = batcher.backend.image_format  # the scorer encodes images for the real backend
        self.reads_images = batcher.backend.reads_images
        self.default_hints = batcher.backend.default_hints  # nano's sessions get the matcher's hints, as in eval

    @property
    def model_name(self) -> str:
        return self.batcher.backend.model_name

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        futures = self.batcher.submit(requests, self.settings)
        index = {future: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future], future.result()
