"""Prompt builders: direct and two-stage, for visual and text demonstrations.

One builder serves evaluation and training. A prompt is a list of chat messages in the form
TRL and transformers' chat templates take (content parts `{"type": "text"}` / `{"type": "image"}`)
plus the image files in the order of the image parts; backends turn the parts into what their
API wants. Tests snapshot every prompt, so a change here is never an accident.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from progresslm.types import Modality, Sample

MODES = ("direct", "two-stage")
PROMPT_VERSION = "1"

_TASK = (
    "You estimate how far a robot or a person has progressed in a task. You are given the task goal, "
    "a demonstration of the task and one current observation image."
)
SYSTEM = {
    "two-stage": (
        f"{_TASK}\n"
        "First decide which demonstration keyframe or step the observation is closest to and explain why inside "
        "<ref_think></ref_think>, then give its number inside <ref></ref>.\n"
        "Then judge whether the observation is before, at or after it, and by how much, inside "
        "<score_think></score_think>, and give the task progress as a percentage inside <score></score>.\n"
        "If the demonstration does not describe what the observation shows (another object, another colour, "
        "another task), write n/a inside every tag."
    ),
    "direct": (
        f"{_TASK}\n"
        "Answer with the task progress shown by the observation as a percentage only, for example 45%. "
        "If the demonstration does not describe what the observation shows (another object, another colour, "
        "another task), answer n/a."
    ),
}
QUESTION = {
    "two-stage": "How far has the task progressed in the current observation?",
    "direct": "How far has the task progressed in the current observation? Answer with a percentage or n/a.",
}


@dataclass(frozen=True)
class Prompt:
    """Chat messages with image placeholders, the image files they stand for, and a stable hash."""

    messages: list[dict]
    images: list[Path]
    hash: str


def percent(fraction: float) -> str:
    """A progress fraction as the prompt shows it: whole percent, 2/3 -> "67%"."""
    return f"{round(fraction * 100)}%"


class _Content:
    """Builds a content list, merging neighbouring text so images sit between text parts. Text pieces are
    joined once per part (not appended string to string), so a demonstration of many steps builds in linear time."""

    def __init__(self) -> None:
        self.parts: list[dict] = []
        self._pending: list[str] = []

    def text(self, text: str) -> None:
        self._pending.append(text)

    def image(self) -> None:
        self._flush()
        self.parts.append({"type": "image"})

    def _flush(self) -> None:
        if self._pending:
            self.parts.append({"type": "text", "text": "".join(self._pending)})
            self._pending = []

    def done(self) -> list[dict]:
        self._flush()
        return self.parts


def build_prompt(sample: Sample, mode: str, image_root: str | Path | None = None, hints: str | None = None) -> Prompt:
    """The chat prompt for one sample in `direct` or `two-stage` mode.

    `hints`: one line of retrieval hints (`progresslm.matcher.hints`) put between the observation and
    the question; None (the paper's protocol) leaves the prompt exactly as without the option."""
    if mode not in SYSTEM:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    demo = sample.demo
    content = _Content()
    content.text(f"Task goal: {sample.goal}\n")
    if demo.modality is Modality.VISUAL:
        content.text(
            f"Demonstration: {len(demo.items)} keyframes, the start and then the end of each of its "
            f"{demo.total_steps} steps, with the progress at each.\n"
        )
        for index in range(len(demo.items)):
            content.text(f"Keyframe {index + 1} ({percent(demo.progress_at(index))}): ")
            content.image()
            content.text("\n")
    else:
        content.text(f"Demonstration: {len(demo.items)} steps.\n")
        for index, step in enumerate(demo.items):
            content.text(f"Step {index + 1}: {step.strip()} (ends at {percent(demo.progress_at(index))})\n")
    content.text("Current observation: ")
    content.image()
    if hints:
        content.text(f"\n{hints.strip()}")
    content.text(f"\n{QUESTION[mode]}")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM[mode]}]},
        {"role": "user", "content": content.done()},
    ]
    names = sample.image_names()
    images = [sample.image_path(name, image_root) for name in names]
    digest = hashlib.sha256(json.dumps([PROMPT_VERSION, messages, names]).encode()).hexdigest()[:16]
    return Prompt(messages=messages, images=images, hash=digest)


def render_text(prompt: Prompt) -> str:
    """The prompt as plain text with `<image>` markers: for snapshots, logs and text-only backends."""
    lines = []
    for message in prompt.messages:
        body = "".join(part["text"] if part["type"] == "text" else "<image>" for part in message["content"])
        lines.append(f"[{message['role']}]\n{body}")
    return "\n".join(lines)
