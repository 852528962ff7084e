"""Model reply -> Prediction, exactly as docs/protocol.md §3.

Three outcomes are kept apart: a value, an explicit N/A, a parse failure. The parser never
raises, whatever the text (property-tested), and runs in time linear in the reply's length: replies come
from models and servers nobody controls, and are parsed again on every resume (the only regular
expressions left match at one position each, without nested repetition).
"""

from __future__ import annotations

import re

from progresslm.types import Prediction, Status

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_QUOTES_AND_SPACE = " \t\r\n\"'`“”‘’"
_TRAILING = ".,;:!"


def _tag(text: str, name: str) -> str | None:
    """Text inside the first `<name>...</name>`, or None when the block is not there."""
    start = text.find(f"<{name}>")
    if start < 0:
        return None
    start += len(name) + 2
    end = text.find(f"</{name}>", start)
    return None if end < 0 else text[start:end]


def _clean(text: str) -> str:
    return text.strip(_QUOTES_AND_SPACE).rstrip(_TRAILING).strip(_QUOTES_AND_SPACE)


def is_na(text: str) -> bool:
    """`n/a` or `na` in any case, quotes and a trailing full stop allowed.

    >>> is_na(" 'N/A' "), is_na("na."), is_na("not applicable"), is_na("n / a"), is_na("n//a")
    (True, True, False, True, False)
    """
    # "n", optional whitespace, at most one "/", optional whitespace, "a": checked by scanning, not by a
    # regular expression (`n\s*/?\s*a` backtracks quadratically on "n" + many spaces + "x").
    cleaned = _clean(text)
    if len(cleaned) < 2 or cleaned[0] not in "nN" or cleaned[-1] not in "aA":
        return False
    middle = cleaned[1:-1]
    return middle.count("/") <= 1 and all(char == "/" or char.isspace() for char in middle)


def _to_fraction(number: str, percent: bool) -> float | None:
    try:
        value = float(number)
    except (OverflowError, ValueError):
        return None
    if value != value:  # NaN
        return None
    if percent or value > 1.0:
        value /= 100.0
    return min(max(value, 0.0), 1.0)


def parse_score_text(text: str) -> tuple[Status, float | None]:
    """A score: N/A words, a number with % (percent), or without (fraction if <= 1, else percent).

    >>> parse_score_text("42%"), parse_score_text("0.5"), parse_score_text("75"), parse_score_text("n/a")
    ((<Status.VALUE: 'value'>, 0.42), (<Status.VALUE: 'value'>, 0.5), (<Status.VALUE: 'value'>, 0.75), (<Status.NA: 'na'>, None))
    """
    if is_na(text):
        return Status.NA, None
    match = _NUMBER.search(text)
    if match is None:
        return Status.PARSE_FAILURE, None
    percent = text[match.end() :].lstrip().startswith("%")
    value = _to_fraction(match.group(), percent)
    return (Status.PARSE_FAILURE, None) if value is None else (Status.VALUE, value)


def parse_ref_text(text: str) -> tuple[Status, int | None]:
    """An anchor: N/A words, else the first integer ("The No. 3 demo image" -> 3)."""
    if is_na(text):
        return Status.NA, None
    match = re.search(r"\d+", text)
    if match is None or len(match.group()) > 9:
        return Status.PARSE_FAILURE, None
    return Status.VALUE, int(match.group())


def parse_two_stage(reply: str) -> Prediction:
    """A `<ref_think>..<ref>k</ref><score_think>..<score>p%</score>` reply.

    >>> p = parse_two_stage("<ref_think>..</ref_think><ref>The No. 3 frame</ref><score_think>..</score_think><score>55%</score>")
    >>> p.status.value, p.score, p.ref_status.value, p.ref
    ('value', 0.55, 'value', 3)
    """
    ref_text = _tag(reply, "ref")
    ref_status, ref = (Status.PARSE_FAILURE, None) if ref_text is None else parse_ref_text(ref_text)
    score_text = _tag(reply, "score")
    status, score = (Status.PARSE_FAILURE, None) if score_text is None else parse_score_text(score_text)
    return Prediction(status=status, score=score, ref_status=ref_status, ref=ref, raw=reply)


def parse_direct(reply: str) -> Prediction:
    """A direct reply: the whole reply is N/A, a percentage, or a bare number.

    >>> parse_direct("37%").score, parse_direct(" N/A ").status.value, parse_direct("about 40%").status.value
    (0.37, 'na', 'parse_failure')
    """
    text = _clean(reply)
    if is_na(text):
        return Prediction(status=Status.NA, raw=reply)
    match = _NUMBER.fullmatch(text.removesuffix("%").rstrip())
    value = None if match is None else _to_fraction(match.group(), text.endswith("%"))
    if value is None:
        return Prediction(status=Status.PARSE_FAILURE, raw=reply)
    return Prediction(status=Status.VALUE, score=value, raw=reply)


def parse_reply(reply: str, mode: str) -> Prediction:
    """Parse a reply of a `direct` or `two-stage` prompt."""
    if mode == "direct":
        return parse_direct(reply)
    if mode == "two-stage":
        return parse_two_stage(reply)
    raise ValueError(f"unknown mode {mode!r}; valid modes: direct, two-stage")
