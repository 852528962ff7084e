import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from progresslm.parsing import parse_direct, parse_reply, parse_two_stage
from progresslm.types import Status


def two_stage(ref: str, score: str) -> str:
    return f"<ref_think>x</ref_think><ref>{ref}</ref><score_think>y</score_think><score>{score}</score>"


@pytest.mark.parametrize(
    "ref, score, expected",
    [
        ("3", "55%", (Status.VALUE, 0.55, Status.VALUE, 3)),
        ("The No. 3 demo image is the most relevant frame", "55%", (Status.VALUE, 0.55, Status.VALUE, 3)),
        ("n/a", "n/a", (Status.NA, None, Status.NA, None)),
        ("'N/A'", "NA", (Status.NA, None, Status.NA, None)),
        ("2", "0.4", (Status.VALUE, 0.4, Status.VALUE, 2)),  # no % and <= 1: a fraction
        ("2", "40", (Status.VALUE, 0.4, Status.VALUE, 2)),  # no % and > 1: a percent
        ("2", "1", (Status.VALUE, 1.0, Status.VALUE, 2)),  # 1 without % is the fraction 1
        ("2", "1%", (Status.VALUE, 0.01, Status.VALUE, 2)),
        ("2", "140%", (Status.VALUE, 1.0, Status.VALUE, 2)),  # clamped
        ("2", "-5%", (Status.VALUE, 0.0, Status.VALUE, 2)),
        ("2", "about 37.5 %", (Status.VALUE, 0.375, Status.VALUE, 2)),
        ("none of them", "fifty", (Status.PARSE_FAILURE, None, Status.PARSE_FAILURE, None)),
    ],
)
def test_two_stage(ref, score, expected):
    p = parse_two_stage(two_stage(ref, score))
    assert (p.status, p.score, p.ref_status, p.ref) == expected


def test_first_block_wins_and_missing_blocks_fail():
    p = parse_two_stage("<ref>2</ref><score>30%</score><ref>5</ref><score>90%</score>")
    assert (p.ref, p.score) == (2, 0.3)
    p = parse_two_stage("<ref>2</ref> and no score")
    assert p.status is Status.PARSE_FAILURE and p.ref == 2
    p = parse_two_stage("<ref>2</ref><score>30%")  # cut off before the closing tag
    assert p.status is Status.PARSE_FAILURE


@pytest.mark.parametrize(
    "reply, status, score",
    [
        ("37%", Status.VALUE, 0.37),
        (" 0.25 ", Status.VALUE, 0.25),
        ("80", Status.VALUE, 0.8),
        ("80.", Status.VALUE, 0.8),
        ('"n/a"', Status.NA, None),
        ("N/A.", Status.NA, None),
        ("about 40%", Status.PARSE_FAILURE, None),
        ("", Status.PARSE_FAILURE, None),
        ("<score>40%</score>", Status.PARSE_FAILURE, None),
    ],
)
def test_direct(reply, status, score):
    p = parse_direct(reply)
    assert (p.status, p.score) == (status, score)
    assert p.ref_status is None and p.raw == reply


def test_unknown_mode():
    with pytest.raises(ValueError, match="valid modes: direct, two-stage"):
        parse_reply("1", "cot")


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text):
    for mode in ("direct", "two-stage"):
        p = parse_reply(text, mode)
        assert p.status in Status
        assert p.score is None or 0.0 <= p.score <= 1.0
        assert (p.score is not None) == (p.status is Status.VALUE)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.floats(allow_nan=True, allow_infinity=True))
def test_parser_never_raises_inside_tags(ref, noise, number):
    reply = f"<ref>{ref}</ref>{noise}<score>{number}%</score>"
    p = parse_two_stage(reply)
    assert p.score is None or 0.0 <= p.score <= 1.0
