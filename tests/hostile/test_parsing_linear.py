"""Replies built to make a backtracking parser take hours: each of the 1 MB replies must parse (the time is
measured by benchmarks/parse_speed.py; here only "it finishes", with a generous limit)."""

from __future__ import annotations

import threading

import pytest

from progresslm.parsing import is_na, parse_direct, parse_two_stage

MB = 1_000_000
ADVERSARIAL = {
    "na pattern": "n" + " " * MB + "x",
    "na in score": "<score>n" + " " * MB + "x</score>",
    "na in ref": "<ref>n" + "\t" * MB + "x</ref><score>n/" + " " * MB + "/a</score>",
    "unclosed tags": "<ref>" * (MB // 5) + "<score>",
    "digits": "<score>" + "1" * MB + "e" + "9" * 40 + "%</score>",
    "signs": "<score>" + "+-" * (MB // 2) + "</score>",
    "quotes": "'" * MB + "n/a" + "'" * MB,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_a_hostile_reply_parses_in_linear_time(name):
    reply = ADVERSARIAL[name]
    results = []
    worker = threading.Thread(target=lambda: results.append((parse_two_stage(reply), parse_direct(reply))), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a backtracking parser takes minutes to hours on these; linear ones take milliseconds
    assert not worker.is_alive(), f"parsing the {name!r} reply did not finish"
    two_stage, direct = results[0]
    assert two_stage.raw is reply and direct.raw is reply


def test_na_is_still_recognised_exactly():
    for text in ("n/a", "N/A", "na", "n / a", " 'N/A'. ", "n\t/\ta", "“n/a”"):
        assert is_na(text), text
    for text in ("n//a", "nan", "n/a/a", "not applicable", "a/n", "n", "", "n x a", "n" + " " * 50 + "x"):
        assert not is_na(text), text
