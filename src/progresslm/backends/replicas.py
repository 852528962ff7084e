"""Several replicas of one model behind the `openai` backend: which replica takes the next request, which
ones are down, and what each one did.

The next request goes to the replica with the fewest requests in flight (ties in turn), and no replica has
more than `concurrency` in flight. A replica that fails a request (refused or dropped connection, timeout,
HTTP 5xx or 429, a reply that is not a chat completion) is down for `cool_down_s` (or as long as the server asked,
`Retry-After`) and takes nothing while another replica is up. After its cool-down it is
tried again with one request at a time (a probe) until one succeeds, so a replica that is still dead costs
one request, not `concurrency` of them. When every replica is down, requests go to them anyway, as they
would to a single server: the caller backs off between tries (`OpenAIBackend._complete`).

The pool knows nothing of HTTP: callers `acquire` a replica, send, and `release` it with what happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Long enough that a crashed server is not hammered while it restarts (vLLM takes tens of seconds to load),
# short enough that a replica that had a hiccup is back in use soon.
COOL_DOWN_S = 30.0


class Cancelled(Exception):
    """The run stopped (another request failed, or the caller closed the backend) while waiting for a replica."""


@dataclass
class ReplicaStats:
    """What one replica did in this run: requests sent to it (each try counts), answered, failed."""

    url: str
    requests: int = 0
    answered: int = 0
    failures: int = 0  # tries that failed on this replica, whatever the cause
    mean_latency_s: float | None = None  # of the answered requests
    last_error: str | None = None
    down: bool = False  # down when the stats were taken


class Replica:
    """One server: its load and health. Only the pool changes it, under the pool's lock."""

    def __init__(self, url: str):
        self.url = url
        self.in_flight = 0
        self.down_until = 0.0  # clock time its cool-down ends
        self.suspect = False  # failed, and has not answered since: probed one request at a time
        self.stats = ReplicaStats(url)
        self._latency_total = 0.0

    def is_down(self, now: float) -> bool:
        return self.suspect and now < self.down_until


class ReplicaPool:
    """Hands out replicas by least outstanding work, at most `concurrency` requests in flight on each."""

    def __init__(self, urls: Sequence[str], concurrency: int, cool_down_s: float = COOL_DOWN_S,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        if not urls:
            raise ValueError("a replica pool needs at least one URL")
        self.replicas = [Replica(url) for url in urls]
        self.concurrency = concurrency
        self.cool_down_s = cool_down_s
        self.clock = clock
        self._turn = 0  # where the round robin among equally loaded replicas starts next
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return len(self.replicas)

    def acquire(self, stop: threading.Event | None = None) -> Replica:
        """A replica with room for one more request, counted in flight until `release`. Waits while every
        replica that is up is full; raises Cancelled once `stop` is set (`wake` makes waiters look)."""
        with self._changed:
            while True:
                if stop is not None and stop.is_set():
                    raise Cancelled("cancelled: another request of this run failed")
                now = self.clock()
                chosen = self._pick(now)
                if chosen is not None:
                    chosen.in_flight += 1
                    chosen.stats.requests += 1
                    return chosen
                # Full: wait for a release, a wake, or the end of the next cool-down (a replica coming back).
                ends = [r.down_until - now for r in self.replicas if r.is_down(now)]
                self._changed.wait(timeout=min(ends, default=None))

    def _pick(self, now: float) -> Replica | None:
        n = len(self.replicas)
        order = [self.replicas[(self._turn + k) % n] for k in range(n)]
        up = [r for r in order if not r.is_down(now)]
        if up:
            # A replica back from its cool-down is probed with one request at a time. With one replica there is
            # nowhere else to send the rest, so it keeps its full concurrency (as a single server always had).
            probe = 1 if n > 1 else self.concurrency
            room = [r for r in up if r.in_flight < (probe if r.suspect else self.concurrency)]
        else:  # every replica is down: try them all the same, as one server would be tried
            room = [r for r in order if r.in_flight < self.concurrency]
        if not room:
            return None
        chosen = min(room, key=lambda r: r.in_flight)  # the first of the least loaded, in round-robin order
        self._turn = (self.replicas.index(chosen) + 1) % n
        return chosen

    def release(self, replica: Replica, *, latency_s: float | None = None, error: str | None = None,
                fault: bool = False, rest_s: float | None = None) -> None:  # fmt: skip
        """The request `acquire` counted on `replica` is over: answered (`latency_s`), or failed with `error`;
        `fault` marks the replica itself as failing: down for `rest_s` (None: the cool-down), not just the request."""
        with self._changed:
            replica.in_flight -= 1
            stats = replica.stats
            if error is None:
                replica.suspect = False
                stats.answered += 1
                replica._latency_total += latency_s or 0.0
                stats.mean_latency_s = replica._latency_total / stats.answered
            else:
                stats.failures += 1
                stats.last_error = error
                if fault:
                    replica.suspect = True
                    replica.down_until = self.clock() + (self.cool_down_s if rest_s is None else rest_s)
            self._changed.notify_all()

    def any_up(self) -> bool:
        """Whether some replica is outside its cool-down."""
        with self._changed:
            now = self.clock()
            return any(not r.is_down(now) for r in self.replicas)

    def wake(self) -> None:
        """Make every waiting `acquire` look again (after its `stop` was set)."""
        with self._changed:
            self._changed.notify_all()

    def stats(self) -> list[ReplicaStats]:
        """A copy of each replica's figures, in the order the URLs were given."""
        with self._changed:
            now = self.clock()
            return [ReplicaStats(**{**vars(r.stats), "down": r.is_down(now)}) for r in self.replicas]

    def last_errors(self) -> str:
        """Each replica's URL and its last error, for a message that says which server failed how."""
        return "; ".join(f"{s.url}: {s.last_error or 'no failure in this run'}" for s in self.stats())


def stats_table(stats: Sequence[ReplicaStats]) -> list[str]:
    """Lines of a small table of per-replica figures, for the log at the end of a run.

    >>> print("\\n".join(stats_table([ReplicaStats("http://a/v1/chat/completions", 10, 9, 1, 0.25, "HTTP 503: x")])))
    replica                                    requests  answered  failures  mean latency
    http://a/v1/chat/completions                     10         9         1       0.250 s  last error: HTTP 503: x
    """
    width = max(40, *(len(s.url) for s in stats))
    lines = [f"{'replica':<{width}}  {'requests':>9} {'answered':>9} {'failures':>9}  mean latency"]
    for s in stats:
        latency = "-" if s.mean_latency_s is None else f"{s.mean_latency_s:.3f} s"
        line = f"{s.url:<{width}}  {s.requests:>9} {s.answered:>9} {s.failures:>9}  {latency:>12}"
        if s.failures and s.last_error:
            line += f"  last error: {s.last_error[:200]}"
        lines.append(line)
    return lines
