"""Replies produced elsewhere (another harness, a hosted batch job, a person), scored as if a model
had just said them.

The file holds one JSON object per line: `{"uid": ..., "reply": ...}`, plus `"draw": k` when a
sample was asked more than once (default 0). Other fields are ignored, so a `results.jsonl` of
this toolkit replays as it is; when a (uid, draw) appears twice the later line wins, as in a
results file that redid a reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request

MISSING_SHOWN = 5  # uids named in a missing-replies error; the rest are counted


def read_replies(path: Path) -> dict[tuple[str, int], str]:
    """(uid, draw) -> reply text from a replies JSONL file; any bad line fails with file:line."""
    replies: dict[tuple[str, int], str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BackendError(f"{where}: not valid JSON ({error.msg}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise BackendError(f'{where}: expected a JSON object like {{"uid": ..., "reply": ...}}')
            uid, reply, draw = record.get("uid"), record.get("reply"), record.get("draw", 0)
            if isinstance(uid, bool) or not isinstance(uid, (str, int)):
                raise BackendError(f"{where}: needs a string field 'uid' naming the sample, got {uid!r}")
            if not isinstance(reply, str):
                raise BackendError(f"{where}: needs a string field 'reply' with the model's text, got {reply!r}")
            if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
                raise BackendError(f"{where}: 'draw' must be a whole number >= 0, got {draw!r}")
            replies[(str(uid), draw)] = reply
    return replies


class ReplayBackend(Backend):
    """Answers each request with the reply the file holds for its uid and draw."""

    image_format: ClassVar[str] = "none"

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)
        if not options.replies:
            raise BackendError('the replay backend needs --replies, a JSONL file of {"uid": ..., "reply": ...} lines')
        self.path = Path(options.replies)
        if not self.path.is_file():
            raise BackendError(f"replies file {self.path} does not exist")
        self.replies = read_replies(self.path)

    @property
    def model_name(self) -> str:
        return f"replay:{self.path.name}"

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        # Check the whole chunk first, so a gap fails before any of the chunk is saved.
        missing = [r for r in requests if (r.uid, r.draw) not in self.replies]
        if missing:
            shown = ", ".join(r.uid if r.draw == 0 else f"{r.uid} (draw {r.draw})" for r in missing[:MISSING_SHOWN])
            more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
            raise BackendError(
                f"{self.path} has no reply for {len(missing)} of {len(requests)} requests: {shown}{more}. "
                "Check that the file was made for this benchmark (same uids) and holds a reply for every "
                "draw asked for (draws 0 to num_samples - 1)"
            )
        for index, request in enumerate(requests):
            yield index, Reply(text=self.replies[(request.uid, request.draw)])
