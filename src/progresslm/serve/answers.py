"""A recognised progress question -> the toolkit's samples and prompts -> the reply in the format it asked for.

The served model is asked exactly as `progresslm eval` asks it: one `Sample` per observation frame (the request's
goal and demonstration), its prompt built by `progresslm.prompts.build_prompt` (with the hints the backend was
trained with, as eval adds them), in the mode the requested format needs: the four tags (or the score tag) come
from a two-stage reply, a bare percentage from a direct one, per-frame answers and unstated formats from the
server's `--mode`. The replies are then written in the asked format (`format_reply`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from progresslm.backends.base import Request
from progresslm.parsing import parse_direct, parse_reply
from progresslm.prompts import build_prompt
from progresslm.serve.questions import Question
from progresslm.types import Prediction, Sample, Status

MODE_OF_ANSWER = {"tags": "two-stage", "score-tag": "two-stage", "percent": "direct"}


def mode_for(question: Question, server_mode: str) -> str:
    """The prompt mode whose replies give the asked format; `server_mode` (--mode) for the others."""
    return MODE_OF_ANSWER.get(question.answer, server_mode)


@dataclass(frozen=True)
class Asked:
    """The backend requests of one question (frame-major within each draw) and how to write their replies."""

    question: Question
    mode: str
    requests: list[Request]

    def frames(self) -> int:
        return len(self.question.frames)


def question_requests(question: Question, uid: str, names: list[str], images: tuple[Any, ...], mode: str,
                      draws: int, hints=None) -> Asked:  # fmt: skip
    """One request per draw and frame: the sample of frame k is the demonstration plus that frame's image.

    `names`: a file name per request image; `images`: the images encoded for the backend (or empty); `hints`:
    samples -> {uid: hints line}, when the backend's model was trained with hints."""
    demo = question.demo(names)
    samples = [Sample(uid=f"{uid}-{k}", trajectory_id="served", goal=question.goal, demo=demo,
                      observation=names[frame.image], progress=None, closest_idx=None, labelled=False)
               for k, frame in enumerate(question.frames)]  # fmt: skip
    lines = hints(samples) if hints is not None else {}
    prompts = [build_prompt(sample, mode, None, hints=lines.get(sample.uid)) for sample in samples]
    requests = []
    for draw in range(draws):
        for sample, prompt, frame in zip(samples, prompts, question.frames):
            indices = list(question.demo_images) + [frame.image]
            encoded = tuple(images[i] for i in indices) if images else ()
            requests.append(Request(sample.uid, draw, prompt, sample, encoded))  # prompt.images: names[indices]
    return Asked(question, mode, requests)


def _percent_text(score: float) -> str:
    """A fraction as a percentage with no more digits than it needs: 0.55 -> "55%", 0.555 -> "55.5%"."""
    return f"{round(100 * score, 2):g}%"


def _number(score: float) -> float | int:
    value = round(100 * score, 2)
    return int(value) if value == int(value) else value


def _read(text: str, mode: str) -> Prediction:
    """A reply in `mode`, else in the other mode: nano writes the tags even when asked for a bare percentage."""
    prediction = parse_reply(text, mode)
    if prediction.status is Status.PARSE_FAILURE:
        other = parse_reply(text, "direct" if mode == "two-stage" else "two-stage")
        if other.status is not Status.PARSE_FAILURE:
            return other
    return prediction


def format_reply(asked: Asked, texts: list[str]) -> str:
    """The replies to one draw (one per frame, in the question's order) in the format the question asked for.

    A reply already in that format is passed on as the model wrote it; one in another format is rewritten from
    its score (a percentage, or n/a); one that cannot be read at all is passed on as it is."""
    question = asked.question
    predictions = [_read(text, asked.mode) for text in texts]
    if question.answer in ("tags", "mode") or (question.answer == "percent" and parse_direct(texts[0]).status
                                               is not Status.PARSE_FAILURE):  # fmt: skip
        return texts[0]
    if question.answer in ("percent", "score-tag"):
        (prediction,) = predictions
        if prediction.status is Status.PARSE_FAILURE:
            return texts[0]
        value = "n/a" if prediction.status is Status.NA else _percent_text(prediction.score)
        return value if question.answer == "percent" else f"<score>{value}</score>"
    if question.answer == "json":
        return json.dumps([_number(p.score) if p.has_value else "n/a" for p in predictions])
    values = [_percent_text(p.score) if p.has_value else "n/a" for p in predictions]
    return "\n".join(f"{frame.name}: {value}" for frame, value in zip(question.frames, values))


def metadata(asked: Asked) -> dict:
    """What the server read from the request and how it asked the model: the `progresslm` field of the reply."""
    return {**asked.question.describe(), "mode": asked.mode}
