"""Rewards against hand-computed values (docs/protocol.md §6), N/A cases and TRL's calling convention."""

import math

import pytest

from progresslm.train.rewards import (
    RewardConfig,
    completion_text,
    detect_na_hack,
    format_reward,
    is_well_formed,
    make_reward_funcs,
    ref_reward,
    reward_stats,
    score_reward,
    total_reward,
)


def reply(ref, score, ref_think="the arm is over the cup", score_think="a bit further"):
    return (
        f"<ref_think>{ref_think}</ref_think>\n<ref>{ref}</ref>\n"
        f"<score_think>{score_think}</score_think>\n<score>{score}</score>"
    )


def parts(completion, gt_ref, gt_progress, n_items, config=None):
    """(format, ref, score) for one completion."""
    columns = {"gt_ref": [gt_ref], "gt_progress": [gt_progress], "n_items": [n_items]}
    return tuple(f([completion], config=config, **columns)[0] for f in (format_reward, ref_reward, score_reward))


# (completion, gt_ref, gt_progress, n_items) -> (format, ref, score), each worked out by hand.
CASES = {
    "exact": (reply(3, "50%"), 3, 0.5, 5, (1.0, 1.0, 1.0)),
    # e = |4 - 3| / (5 - 1) = 0.25 -> 1 - 0.0625; |0.6 - 0.5| = 0.1 -> 0.9
    "off_by_one": (reply(4, "60%"), 3, 0.5, 5, (1.0, 0.9375, 0.9)),
    # e = |1 - 3| / 4 = 0.5 -> 0.75; |0.2 - 0.5| -> 0.7
    "off_by_two": (reply(1, "20%"), 3, 0.5, 5, (1.0, 0.75, 0.7)),
    # e = 8 / 4 clamped to 1 -> 0; |1 - 0| -> 0
    "far": (reply(9, "100%"), 1, 0.0, 5, (1.0, 0.0, 0.0)),
    # N = 1: the denominator is max(N - 1, 1) = 1, e = 1 -> 0
    "one_item": (reply(2, "100%"), 1, 1.0, 1, (1.0, 0.0, 1.0)),
    # a bare number <= 1 is a fraction, > 1 a percent; 150% clamps to 1
    "fraction": (reply(3, "0.25"), 3, 0.5, 5, (1.0, 1.0, 0.75)),
    "bare_percent": (reply(3, "75"), 3, 0.5, 5, (1.0, 1.0, 0.75)),
    "clamped": (reply(5, "150%"), 5, 0.9, 5, (1.0, 1.0, 0.9)),
    # the lenient ref parse of docs/protocol.md §3 still counts as parseable
    "wordy_ref": (reply("The No. 3 demo image", "50%"), 3, 0.5, 5, (1.0, 1.0, 1.0)),
    "both_na": (reply("n/a", "n/a"), None, None, 5, (1.0, 1.0, 1.0)),
    "both_na_spelled": (reply("'N/A'", "NA"), None, None, 5, (1.0, 1.0, 1.0)),
    "false_na": (reply("n/a", "n/a"), 3, 0.5, 5, (0.0, 0.0, 0.0)),
    "missed_na": (reply(2, "40%"), None, None, 5, (0.0, 0.0, 0.0)),
    # the hack: anchor N/A, numeric score, on either kind of sample
    "hack_on_unanswerable": (reply("n/a", "40%"), None, None, 5, (0.0, 0.0, 0.0)),
    "hack_on_answerable": (reply("n/a", "40%"), 2, 0.4, 5, (0.0, 0.0, 0.0)),
    "value_ref_na_score": (reply(2, "n/a"), 2, 0.4, 5, (0.0, 0.0, 0.0)),
    # parse failures give 0 for the part that fails; the other part is still judged
    "ref_unreadable": (reply("none of them", "50%"), 3, 0.5, 5, (0.0, 0.0, 1.0)),
    "score_unreadable": (reply(3, "about half"), 3, 0.5, 5, (0.0, 1.0, 0.0)),
    "no_tags": ("50%", 3, 0.5, 5, (0.0, 0.0, 0.0)),
    # an N/A part beside an unreadable one earns nothing: not both_na (1), not false_na / missed_na
    "na_ref_unreadable_score_unanswerable": (reply("n/a", "about half"), None, None, 5, (0.0, 0.0, 0.0)),
    "unreadable_ref_na_score_unanswerable": (reply("none of them", "n/a"), None, None, 5, (0.0, 0.0, 0.0)),
    "na_ref_unreadable_score_answerable": (reply("n/a", "about half"), 3, 0.5, 5, (0.0, 0.0, 0.0)),
    # a value beside an unreadable part on an unanswerable sample is still a missed N/A
    "value_ref_unreadable_score_unanswerable": (reply(2, "about half"), None, None, 5, (0.0, 0.0, 0.0)),
    # format: only whitespace outside the four blocks, in order, each once
    "whitespace_around": ("\n  " + reply(3, "50%") + "  \n", 3, 0.5, 5, (1.0, 1.0, 1.0)),
    "text_before": ("Sure! " + reply(3, "50%"), 3, 0.5, 5, (0.0, 1.0, 1.0)),
    "text_after": (reply(3, "50%") + " Done.", 3, 0.5, 5, (0.0, 1.0, 1.0)),
    "less_than_in_think": (reply(3, "50%", score_think="progress < 60%"), 3, 0.5, 5, (1.0, 1.0, 1.0)),
    # parsed as evaluation parses it: the first <ref> block (here inside ref_think) holds 2
    "nested_tag": (reply(3, "50%", ref_think="<ref>2</ref>"), 3, 0.5, 5, (0.0, 0.9375, 1.0)),
    "repeated_score": (reply(3, "50%") + "<score>10%</score>", 3, 0.5, 5, (0.0, 1.0, 1.0)),
    "wrong_order": (
        "<ref>3</ref><ref_think>a</ref_think><score_think>b</score_think><score>50%</score>", 3, 0.5, 5, (0.0, 1.0, 1.0)
    ),
    "missing_think": ("<ref>3</ref><score>50%</score>", 3, 0.5, 5, (0.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_computed(name):
    completion, gt_ref, gt_progress, n_items, expected = CASES[name]
    assert parts(completion, gt_ref, gt_progress, n_items) == pytest.approx(expected)


def test_total_is_weighted_sum():
    # 0.1 * 1 + 0.6 * 0.9375 + 0.3 * 0.9
    assert total_reward(reply(4, "60%"), 3, 0.5, 5) == pytest.approx(0.9325)
    assert total_reward(reply("n/a", "n/a"), None, None, 5) == pytest.approx(1.0)
    assert total_reward(reply("n/a", "40%"), None, None, 5) == 0.0
    config = RewardConfig(weights=(1, 1, 1))
    assert total_reward(reply(4, "60%"), 3, 0.5, 5, config) == pytest.approx(1 + 0.9375 + 0.9)


def test_graded_na_terms():
    negative = RewardConfig(false_na=-0.5, missed_na=-1.0)
    assert parts(reply("n/a", "n/a"), 3, 0.5, 5, negative) == (0.0, -0.5, -0.5)
    assert parts(reply(2, "40%"), None, None, 5, negative) == (0.0, -1.0, -1.0)
    # 0.1 * 0 + 0.6 * -0.5 + 0.3 * -0.5
    assert total_reward(reply("n/a", "n/a"), 3, 0.5, 5, negative) == pytest.approx(-0.45)
    keep_format = RewardConfig(false_na=-0.5, one_sided_na_zeroes_format=False)
    assert parts(reply("n/a", "n/a"), 3, 0.5, 5, keep_format) == (1.0, -0.5, -0.5)
    assert total_reward(reply("n/a", "n/a"), 3, 0.5, 5, keep_format) == pytest.approx(-0.35)
    partial = RewardConfig(both_na=0.5)
    assert parts(reply("n/a", "n/a"), None, None, 5, partial) == (1.0, 0.5, 0.5)
    # a part that does not parse gets 0, and so does an N/A beside it: no N/A term for a half-read reply
    assert parts(reply("n/a", "??"), 3, 0.5, 5, negative) == (0.0, 0.0, 0.0)
    assert parts(reply("??", "n/a"), None, None, 5, negative) == (0.0, 0.0, 0.0)
    assert parts(reply("n/a", "??"), None, None, 5, partial) == (0.0, 0.0, 0.0)


def test_conversational_completions():
    text = reply(4, "60%")
    forms = [
        text,
        [{"role": "assistant", "content": text}],
        [{"role": "assistant", "content": [{"type": "text", "text": text[:20]}, {"type": "text", "text": text[20:]}]}],
        [{"role": "user", "content": "ignored"}, {"role": "assistant", "content": text}],
    ]
    columns = {"gt_ref": [3] * 4, "gt_progress": [0.5] * 4, "n_items": [5] * 4}
    assert ref_reward(forms, **columns) == pytest.approx([0.9375] * 4)
    assert score_reward(forms, **columns) == pytest.approx([0.9] * 4)
    assert format_reward(forms, **columns) == [1.0] * 4
    assert completion_text([{"role": "user", "content": "x"}]) == ""


def test_batch_and_trl_kwargs():
    completions = [reply(3, "50%"), reply("n/a", "n/a"), "garbage"]
    logged = {}
    kwargs = {
        "gt_ref": [3, None, 2],
        "gt_progress": [0.5, None, 0.25],
        "n_items": [5, 4, 4],
        "prompts": ["p"] * 3,
        "completion_ids": [[1]] * 3,
        "uid": ["a", "b", "c"],
        "trainer_state": object(),
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: logged.__setitem__(name, value),
    }
    functions, weights = make_reward_funcs()
    assert [f.__name__ for f in functions] == ["format", "ref", "score"]
    assert weights == [0.1, 0.6, 0.3]
    assert [f(completions, **kwargs) for f in functions] == [[1.0, 1.0, 0.0]] * 3
    assert logged["format_rate"] == pytest.approx(2 / 3)
    assert logged["na_rate"] == pytest.approx(1 / 3)
    assert logged["hack_rate"] == 0.0


def test_bound_functions_use_their_config():
    functions, weights = make_reward_funcs(RewardConfig(weights=(0, 2, 1), false_na=-1.0))
    assert weights == [0.0, 2.0, 1.0]
    columns = {"gt_ref": [3], "gt_progress": [0.5], "n_items": [5]}
    assert [f([reply("n/a", "n/a")], **columns)[0] for f in functions] == [0.0, -1.0, -1.0]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"weights": (1, 2)}, "3 numbers"),
        ({"weights": (0.1, "a", 0.3)}, "3 numbers"),
        ({"weights": (0.1, -0.6, 0.3)}, "non-negative"),
        ({"weights": (0, 0, 0)}, "not all 0"),
        ({"weights": (0.1, math.inf, 0.3)}, "3 numbers"),
        ({"both_na": math.nan}, "both_na"),
    ],
)
def test_config_validation(kwargs, words):
    with pytest.raises(ValueError, match=words):
        RewardConfig(**kwargs)


def test_missing_column_says_how_to_fix():
    with pytest.raises(ValueError, match="gt_ref.*grpo_records"):
        ref_reward([reply(3, "50%")], gt_progress=[0.5], n_items=[5])


def test_detect_na_hack_and_stats():
    completions = [reply("n/a", "40%"), reply(2, "n/a"), reply("n/a", "n/a"), reply(2, "40%"), "40%"]
    assert detect_na_hack(completions) == [True, True, False, False, False]
    stats = reward_stats(completions, gt_progress=[None, 0.4, 0.4, None, 0.4])
    assert stats == pytest.approx(
        {"format_rate": 0.8, "na_rate": 0.2, "hack_rate": 0.4, "false_na_rate": 0.4, "missed_na_rate": 0.4}
    )
    assert reward_stats([]) == {}
    assert set(reward_stats(completions)) == {"format_rate", "na_rate", "hack_rate"}


def test_is_well_formed_needs_readable_answers():
    assert is_well_formed(reply("n/a", "n/a"))
    assert not is_well_formed(reply("", "50%"))
    assert not is_well_formed(reply(3, ""))
