"""The results file of a run: one JSON line per reply, appended as soon as the reply arrives.

A crash or Ctrl-C loses nothing already written; re-running resumes from what is there. A
malformed line (a write cut short by a crash, a hand edit) is reported and skipped, never fatal.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from progresslm.parsing import parse_reply
from progresslm.prompts import MODES
from progresslm.types import Prediction


@dataclass
class ResultRecord:
    """One reply of one backend to one draw of one sample."""

    uid: str
    draw: int
    backend: str
    model: str
    mode: str
    prompt_hash: str
    reply: str
    status: str  # value | na | parse_failure
    score: float | None
    ref_status: str | None
    ref: int | None
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    split: str = ""
    trajectory_id: str = ""
    error: str | None = None  # the backend refused the request; the reply is empty
    created: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.uid, self.draw)

    def prediction(self) -> Prediction:
        """The reply parsed again, so a parser fix reaches old results and a hand-edited
        `score` field cannot disagree with the reply it came from."""
        return parse_reply(self.reply, self.mode)

    @classmethod
    def from_json(cls, data: dict) -> ResultRecord:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


class ResultStore:
    """Append-only JSONL of ResultRecords with resume support."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = None

    def read(self) -> tuple[list[ResultRecord], list[BadLine]]:
        """All readable records in file order, and the lines that could not be read."""
        records, bad = [], []
        if not self.path.exists():
            return records, bad
        if not self.path.is_file():
            raise ValueError(f"{self.path} is not a file")
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    data = json.loads(text)
                    if not isinstance(data, dict):
                        raise ValueError("not a JSON object")
                    _validate(data)
                    records.append(ResultRecord.from_json(data))
                except (ValueError, TypeError) as err:
                    bad.append(BadLine(number, str(err)[:120]))
        return records, bad

    def foreign(self, identity: dict) -> list[ResultRecord]:
        """Records made by another run than `identity` (its `backend`, `model` and `mode`): a folder that holds
        them mixes two runs, whatever its config.json says (or when it has none)."""
        records, _ = self.read()
        keys = ("backend", "model", "mode")
        return [r for r in records if any(getattr(r, k) != identity[k] for k in keys if k in identity)]

    def latest(
        self, prompt_hashes: dict[str, str] | None = None
    ) -> tuple[dict[tuple[str, int], ResultRecord], list[BadLine], int]:
        """The last record per (uid, draw); with `prompt_hashes`, only records of those uids made
        from their current prompt. Also returns the bad lines and the count of stale records
        (uids in `prompt_hashes` whose record was made from another prompt)."""
        records, bad = self.read()
        latest: dict[tuple[str, int], ResultRecord] = {}
        stale = 0
        for record in records:
            if prompt_hashes is not None:
                expected = prompt_hashes.get(record.uid)
                if expected is None:
                    continue  # a sample outside this selection (e.g. --limit): kept, not used
                if expected != record.prompt_hash:
                    stale += 1
                    continue
            latest[record.key] = record
        return latest, bad, stale

    def append(self, record: ResultRecord) -> None:
        """Write one record and flush it to the OS before returning."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
            if needs_newline:  # a line cut short by a crash must not swallow the next record
                self._handle.write("\n")
        if not record.created:
            record.created = time.time()
        self._handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_TYPES = {"uid": str, "draw": int, "reply": str, "prompt_hash": str, "mode": str}


def _validate(data: dict) -> None:
    """Raise ValueError when a results line lacks a field the harness relies on, or has the wrong type."""
    for key, kind in _TYPES.items():
        if key not in data:
            raise ValueError(f"missing {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise ValueError(f"{key!r} should be {kind.__name__}, got {data[key]!r}"[:120])
    if data["mode"] not in MODES:
        raise ValueError(f"unknown mode {data['mode']!r}")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class RunLockedError(RuntimeError):
    """Another process is writing into the same run folder."""


class RunLock:
    """An exclusive lock on a run folder (`fcntl.flock` on OUT/.lock) for as long as a run writes into it.

    A second run into the same folder is refused with the holder's pid. The operating system drops the lock
    when the holder dies, so a run killed with `kill -9` never blocks its own resume.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / ".lock"
        self._handle = None

    def __enter__(self) -> RunLock:
        import fcntl  # lazy: fcntl is POSIX-only; every command imports this module

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockedError(
                f"{self.path.parent} is being written by another run (pid {holder}); wait for it to finish, or "
                "choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None
