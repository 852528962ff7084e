"""GRPO rewards for two-stage replies, exactly as docs/protocol.md §6, in TRL's reward signature.

Each reward is a pure function `f(completions, **kwargs) -> list[float]`. TRL passes the dataset's
extra columns as keyword arguments; these read `gt_ref` (1-based anchor, None when unanswerable),
`gt_progress` (fraction in [0, 1], None when unanswerable) and `n_items` (demo items N) and ignore
the rest (`prompts`, `trainer_state`, ...). A completion is a string or a conversation (a list of
`{"role", "content"}` messages, whose last assistant message is scored).

N/A handling. A prediction is N/A only when both its ref and its score are N/A. When the ground
truth is N/A and the prediction holds any value, or the ground truth has a value and the prediction
holds any N/A, the N/A is one-sided: ref and score get `missed_na` / `false_na` (0 by default) and,
per docs/protocol.md §6, the format reward is 0 too. This also takes away the "anchor N/A but numeric score" hack:
a mixed prediction is one-sided whatever the ground truth is. A part that does not parse gets 0,
and so does an N/A part whose other part does not parse: N/A is an answer only when the reply is
readable, so such a reply earns neither `both_na` nor the one-sided terms (`false_na`, `missed_na`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from progresslm.parsing import parse_two_stage
from progresslm.types import Prediction, Status, is_number

TAGS = ("ref_think", "ref", "score_think", "score")
_BLOCKS = re.compile(
    r"\s*<ref_think>(.*?)</ref_think>\s*<ref>(.*?)</ref>\s*<score_think>(.*?)</score_think>\s*<score>(.*?)</score>\s*",
    re.DOTALL,
)
_ANY_TAG = re.compile(r"</?(?:ref_think|ref|score_think|score)>")


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the format, ref and score rewards, and what the N/A cases earn.

    The defaults are docs/protocol.md §6 (1:6:3, both N/A earns 1, a one-sided N/A earns 0 and loses the
    format reward). The authors also tried graded variants, e.g. `false_na=-0.5`.
    """

    weights: tuple[float, float, float] = (0.1, 0.6, 0.3)  # (format, ref, score)
    both_na: float = 1.0  # ref and score reward when ground truth and prediction are both N/A
    false_na: float = 0.0  # ref and score reward when the prediction is N/A but the ground truth has a value
    missed_na: float = 0.0  # ref and score reward when the prediction has a value but the ground truth is N/A
    one_sided_na_zeroes_format: bool = True  # docs/protocol.md §6: a one-sided N/A also earns no format reward

    def __post_init__(self) -> None:
        weights = tuple(self.weights)
        if len(weights) != 3 or not all(is_number(w) for w in weights):
            raise ValueError(
                f"RewardConfig.weights must be 3 numbers (format, ref, score), got {self.weights!r}; "
                "for example (0.1, 0.6, 0.3), the paper's 1:6:3"
            )
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(
                f"RewardConfig.weights must be non-negative and not all 0, got {self.weights!r}: a negative "
                "weight rewards failing and all zeros give no learning signal; use e.g. (0.1, 0.6, 0.3)"
            )
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        for name in ("both_na", "false_na", "missed_na"):
            if not is_number(getattr(self, name)):
                raise ValueError(f"RewardConfig.{name} must be a finite number, got {getattr(self, name)!r}")


DEFAULT_CONFIG = RewardConfig()


def completion_text(completion: str | list[dict]) -> str:
    """The reply text of a completion: the string itself, or the last assistant message's content
    (a string or a list of text parts) of a conversation.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "42%"}]}])
    '42%'
    """
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role") == "assistant":
            content = message.get("content")
            if content is None:
                return ""
            if isinstance(content, str):
                return content
            return "".join(part.get("text") or "" for part in content if part.get("type", "text") == "text")
    return ""


def is_well_formed(reply: str) -> bool:
    """Exactly the four blocks in order, only whitespace around them, and a ref and score that each
    read as a value or N/A.

    >>> is_well_formed("<ref_think>a</ref_think> <ref>2</ref>\\n<score_think>b</score_think><score>40%</score>")
    True
    >>> is_well_formed("Sure! <ref_think>a</ref_think><ref>2</ref><score_think>b</score_think><score>40%</score>")
    False
    """
    match = _BLOCKS.fullmatch(reply)
    if match is None or any(_ANY_TAG.search(block) for block in match.groups()):
        return False
    prediction = parse_two_stage(reply)
    return prediction.status is not Status.PARSE_FAILURE and prediction.ref_status is not Status.PARSE_FAILURE


def _one_sided(prediction: Prediction, gt_na: bool) -> bool:
    """Ground truth and prediction disagree on N/A (a mixed prediction always disagrees)."""
    statuses = (prediction.ref_status, prediction.status)
    if gt_na:
        return Status.VALUE in statuses
    return Status.NA in statuses


def _ground_truth(kwargs: dict[str, Any], count: int) -> tuple[list, list, list]:
    columns = []
    for name in ("gt_ref", "gt_progress", "n_items"):
        if name not in kwargs:
            raise ValueError(
                f"reward needs the dataset column {name!r}; build the GRPO dataset with "
                "progresslm.train.training_data.grpo_records and set remove_unused_columns=False"
            )
        if len(kwargs[name]) != count:
            raise ValueError(f"column {name!r} has {len(kwargs[name])} values for {count} completions")
        columns.append(list(kwargs[name]))
    return columns[0], columns[1], columns[2]


def _part_reward(part: str, completion, gt_ref, gt_progress, n_items, config: RewardConfig) -> float:
    """One of "format", "ref", "score" for one completion."""
    reply = completion_text(completion)
    prediction = parse_two_stage(reply)
    gt_na = gt_progress is None
    one_sided = _one_sided(prediction, gt_na)
    if part == "format":
        return 1.0 if is_well_formed(reply) and not (one_sided and config.one_sided_na_zeroes_format) else 0.0
    status = prediction.ref_status if part == "ref" else prediction.status
    other = prediction.status if part == "ref" else prediction.ref_status
    if status is Status.PARSE_FAILURE or (status is Status.NA and other is Status.PARSE_FAILURE):
        return 0.0
    if one_sided:
        return config.missed_na if gt_na else config.false_na
    if gt_na:
        return config.both_na
    if part == "score":
        return 1.0 - min(abs(prediction.score - gt_progress), 1.0)
    if gt_ref is None:
        raise ValueError("an answerable row (gt_progress set) has no gt_ref; rebuild the dataset with grpo_records")
    error = min(abs(prediction.ref - gt_ref) / max(n_items - 1, 1), 1.0)
    return 1.0 - error**2


def _rewards(part: str, completions: Sequence, kwargs: dict[str, Any], config: RewardConfig | None) -> list[float]:
    config = config or DEFAULT_CONFIG
    gt_refs, gt_progresses, n_items = _ground_truth(kwargs, len(completions))
    return [
        _part_reward(part, completion, gt_refs[i], gt_progresses[i], n_items[i], config)
        for i, completion in enumerate(completions)
    ]


def format_reward(completions: Sequence, config: RewardConfig | None = None, **kwargs: Any) -> list[float]:
    """1 for exactly the four blocks with a parseable ref and score, else 0 (also 0 on a one-sided N/A).

    >>> good = "<ref_think>a</ref_think><ref>2</ref><score_think>b</score_think><score>30%</score>"
    >>> na = "<ref_think>a</ref_think><ref>n/a</ref><score_think>b</score_think><score>n/a</score>"
    >>> format_reward([good, na, "30%"], gt_ref=[2, 2, 2], gt_progress=[0.3, 0.3, 0.3], n_items=[5, 5, 5])
    [1.0, 0.0, 0.0]
    """
    return _rewards("format", completions, kwargs, config)


def ref_reward(completions: Sequence, config: RewardConfig | None = None, **kwargs: Any) -> list[float]:
    """1 - e^2 with e = min(|k^ - k| / max(N - 1, 1), 1); N/A cases as the module says.

    >>> reply = "<ref_think>a</ref_think><ref>{}</ref><score_think>b</score_think><score>{}</score>"
    >>> ref_reward([reply.format(3, "50%"), reply.format("n/a", "n/a")], gt_ref=[1, None],
    ...            gt_progress=[0.0, None], n_items=[5, 5])
    [0.75, 1.0]
    """
    return _rewards("ref", completions, kwargs, config)


def score_reward(completions: Sequence, config: RewardConfig | None = None, **kwargs: Any) -> list[float]:
    """1 - min(|p^ - p|, 1) with p in [0, 1]; N/A cases as the module says.

    >>> reply = "<ref_think>a</ref_think><ref>{}</ref><score_think>b</score_think><score>{}</score>"
    >>> score_reward([reply.format(3, "75%"), reply.format("n/a", "40%")], gt_ref=[3, None],
    ...              gt_progress=[0.5, None], n_items=[5, 5])
    [0.75, 0.0]
    """
    return _rewards("score", completions, kwargs, config)


def make_reward_funcs(config: RewardConfig | None = None) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The three rewards bound to `config`, named "format", "ref", "score" (TRL logs them by these
    names), and their weights for `GRPOConfig.reward_weights`.

    The "format" function also logs `reward_stats` through TRL's `log_metric` keyword when TRL passes it.
    """
    config = config or DEFAULT_CONFIG
    functions = []
    for name, reward in (("format", format_reward), ("ref", ref_reward), ("score", score_reward)):

        def bound(completions, _reward=reward, _name=name, **kwargs):
            log_metric = kwargs.get("log_metric")
            if _name == "format" and callable(log_metric):
                for key, value in reward_stats(completions, **kwargs).items():
                    log_metric(key, value)
            return _reward(completions, config=config, **kwargs)

        bound.__name__ = bound.__qualname__ = name
        bound.__doc__ = reward.__doc__
        functions.append(bound)
    return functions, list(config.weights)


def total_reward(
    completion: str | list[dict],
    gt_ref: int | None,
    gt_progress: float | None,
    n_items: int,
    config: RewardConfig | None = None,
) -> float:
    """The weighted sum R = a*format + b*ref + c*score for one completion.

    >>> reply = "<ref_think>a</ref_think><ref>3</ref><score_think>b</score_think><score>60%</score>"
    >>> round(total_reward(reply, gt_ref=3, gt_progress=0.5, n_items=5), 4)
    0.97
    """
    config = config or DEFAULT_CONFIG
    columns = {"gt_ref": [gt_ref], "gt_progress": [gt_progress], "n_items": [n_items]}
    parts = (format_reward, ref_reward, score_reward)
    return sum(w * f([completion], config=config, **columns)[0] for w, f in zip(config.weights, parts))


def detect_na_hack(completions: Sequence) -> list[bool]:
    """True where the anchor is N/A but the score a value, or the anchor a value but the score N/A.

    >>> reply = "<ref_think>a</ref_think><ref>{}</ref><score_think>b</score_think><score>{}</score>"
    >>> detect_na_hack([reply.format("n/a", "40%"), reply.format(2, "n/a"), reply.format("n/a", "n/a")])
    [True, True, False]
    """
    flags = []
    for completion in completions:
        prediction = parse_two_stage(completion_text(completion))
        flags.append({prediction.ref_status, prediction.status} == {Status.NA, Status.VALUE})
    return flags


def reward_stats(completions: Sequence, **kwargs: Any) -> dict[str, float]:
    """Shares of a batch, for logging: `format_rate` (well-formed replies), `na_rate` (ref and
    score both N/A), `hack_rate` (see `detect_na_hack`); with `gt_progress` given, also
    `false_na_rate` (N/A on answerable rows) and `missed_na_rate` (a value on unanswerable rows),
    each over all rows. Empty batches give {}.

    >>> reply = "<ref_think>a</ref_think><ref>{}</ref><score_think>b</score_think><score>{}</score>"
    >>> reward_stats([reply.format(2, "40%"), reply.format("n/a", "40%")], gt_progress=[0.4, None])
    {'format_rate': 1.0, 'na_rate': 0.0, 'hack_rate': 0.5, 'false_na_rate': 0.0, 'missed_na_rate': 0.5}
    """
    count = len(completions)
    if count == 0:
        return {}
    replies = [completion_text(completion) for completion in completions]
    predictions = [parse_two_stage(reply) for reply in replies]
    stats = {
        "format_rate": sum(map(is_well_formed, replies)) / count,
        "na_rate": sum(p.status is Status.NA and p.ref_status is Status.NA for p in predictions) / count,
        "hack_rate": sum(detect_na_hack(replies)) / count,
    }
    gt_progress = kwargs.get("gt_progress")
    if gt_progress is not None and len(gt_progress) == count:
        pairs = list(zip(predictions, gt_progress))
        stats["false_na_rate"] = sum(g is not None and _one_sided(p, gt_na=False) for p, g in pairs) / count
        stats["missed_na_rate"] = sum(g is None and _one_sided(p, gt_na=True) for p, g in pairs) / count
    return stats
