"""Live monitoring sessions: one `ProgressMonitor` per id, capped in number and closed when idle."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from progresslm.serve.errors import ApiError


@dataclass
class Session:
    id: str
    goal: str
    monitor: Any  # ProgressMonitor
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one frames call at a time, in order

    def close(self) -> None:
        self.monitor.scorer.close()

    def describe(self, ttl_s: float) -> dict:
        idle = time.monotonic() - self.last_used
        return {
            "id": self.id,
            "goal": self.goal,
            "created": int(self.created),
            "idle_s": round(idle, 3),
            "expires_in_s": round(max(ttl_s - idle, 0.0), 3),
            "settings": self.monitor.settings(),
            "summary": self.monitor.summary(),
        }


class SessionStore:
    """At most `capacity` sessions; one unused for `ttl_s` seconds is closed at the next look."""

    def __init__(self, capacity: int, ttl_s: float):
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, goal: str, monitor: Any) -> Session:
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.capacity:
                raise ApiError(
                    429,
                    f"{len(self._sessions)} sessions are open, the server's limit (--max-sessions); "
                    f"DELETE finished ones, or wait for idle ones to expire after {self.ttl_s:g} s",
                    code="too_many_sessions",
                )
            session = Session(id=f"sess-{secrets.token_hex(12)}", goal=goal, monitor=monitor)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session:
        self.expire()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise ApiError(404, f"no session {session_id!r} (never created, deleted, or expired after "
                               f"{self.ttl_s:g} s idle); POST /v1/sessions to start one", "session_id", "unknown_session")  # fmt: skip
            session.last_used = time.monotonic()
            return session

    def remove(self, session_id: str) -> Session:
        session = self.get(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
        with session.lock:  # a frames call in flight finishes first
            session.close()
        return session

    def expire(self) -> int:
        """Close the sessions idle for longer than the TTL; how many were closed."""
        now = time.monotonic()
        with self._lock:
            stale = [s for s in self._sessions.values() if now - s.last_used > self.ttl_s and not s.lock.locked()]
            for session in stale:
                del self._sessions[session.id]
        for session in stale:
            session.close()
        return len(stale)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
