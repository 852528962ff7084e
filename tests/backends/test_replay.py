"""Replaying replies from a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from progresslm.backends.base import BackendError, BackendOptions, Request
from progresslm.backends.replay import ReplayBackend
from progresslm.bench.format import read_official
from progresslm.prompts import build_prompt

FIXTURE = Path(__file__).parents[1] / "fixtures" / "official_sample" / "visual_same_view.jsonl"


def requests(draws: int = 1) -> list[Request]:
    samples = read_official(FIXTURE).samples
    return [Request(s.uid, d, build_prompt(s, "direct"), s) for s in samples for d in range(draws)]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replays_each_reply_by_uid_and_draw(tmp_path):
    reqs = requests(draws=2)
    lines = [json.dumps({"uid": r.uid, "draw": r.draw, "reply": f"{i}%"}) for i, r in enumerate(reqs)]
    # draw 0 may be left out, extra fields are ignored, blank lines skipped
    lines[0] = json.dumps({"uid": reqs[0].uid, "reply": "0%", "status": "value"})
    path = write(tmp_path / "replies.jsonl", lines + [""])
    backend = ReplayBackend(BackendOptions(replies=str(path)), "direct")
    replies = dict(backend.generate(reqs))
    assert {i: reply.text for i, reply in replies.items()} == {i: f"{i}%" for i in range(len(reqs))}
    assert backend.model_name == "replay:replies.jsonl"
    assert backend.image_format == "none"


def test_missing_uid_lists_some_and_counts_all_before_yielding(tmp_path):
    reqs = requests()
    path = write(tmp_path / "r.jsonl", [json.dumps({"uid": reqs[0].uid, "reply": "5%"})])
    backend = ReplayBackend(BackendOptions(replies=str(path)), "direct")
    replies = backend.generate(reqs)
    with pytest.raises(BackendError) as error:
        next(replies)
    message = str(error.value)
    missing = [r.uid for r in reqs[1:]]
    assert f"no reply for {len(missing)} of {len(reqs)}" in message
    assert all(uid in message for uid in missing[:5]) and missing[5] not in message
    assert f"and {len(missing) - 5} more" in message


def test_missing_draw_is_missing(tmp_path):
    reqs = requests(draws=2)[:2]
    path = write(tmp_path / "r.jsonl", [json.dumps({"uid": reqs[0].uid, "reply": "5%"})])
    with pytest.raises(BackendError, match=r"\(draw 1\)"):
        list(ReplayBackend(BackendOptions(replies=str(path)), "direct").generate(reqs))


@pytest.mark.parametrize(
    "bad",
    [
        '{"uid": "a", "reply": ',
        '["a", "5%"]',
        '{"reply": "5%"}',
        '{"uid": "a", "reply": null}',
        '{"uid": "a", "reply": "1", "draw": -1}',
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad):
    path = write(tmp_path / "r.jsonl", ['{"uid": "ok", "reply": "1%"}', "", bad])
    with pytest.raises(BackendError, match=r"r\.jsonl:3: "):
        ReplayBackend(BackendOptions(replies=str(path)), "direct")


def test_missing_file_or_option(tmp_path):
    with pytest.raises(BackendError, match="--replies"):
        ReplayBackend(BackendOptions(), "direct")
    with pytest.raises(BackendError, match="does not exist"):
        ReplayBackend(BackendOptions(replies=str(tmp_path / "nope.jsonl")), "direct")
