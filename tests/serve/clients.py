"""Clients of other progress benchmarks, written here: each builds the OpenAI messages of one prompt structure for a
benchmark sample, in its own words (never progresslm's, never copied from anyone's prompts), and says what
reply format it asked for. `Wording` holds the words a client chooses; tests draw them with hypothesis.

Structures (docs/serve.md):
- `authors_visual` / `authors_text`: the layout of the ProgressLM authors' evaluation prompts (system text first
  in the one user message, the goal sentence, a demonstration intro, the keyframes and then one "<image> P%"
  list, or steps each followed by a line with its progress, the current-state intro, the image, instructions
  asking for the four tags, or in the "nothink" variant for a bare percentage or n/a);
- `plain_visual` / `plain_text`: a goal after a task word, keyframes labelled before or after or not at all, or
  numbered / bulleted steps, in one user message or several, with a system message or none;
- `frames`: a labelled demonstration, then several frames in shuffled order, asking for each one's progress as
  `Frame k: P%` lines or as a JSON list.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from progresslm.types import Modality, Sample


def url_of(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def image(path: Path) -> dict:
    return {"type": "image_url", "image_url": {"url": url_of(path)}}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def pct(fraction: float) -> str:
    return f"{round(100 * fraction)}%"


GOAL_INTROS = ("Task: {goal}", "Goal: {goal}", "The task goal is {goal}", "Objective: {goal}", "Our goal is {goal}",
               "Task description - {goal}", "The goal of the whole task is {goal}")  # fmt: skip
DEMO_INTROS = ("Demonstration:", "Here is a reference run of the task:", "Example execution, start to end:",
               "Reference keyframes:", "How an expert did it:")  # fmt: skip
STEP_INTROS = ("Steps:", "The plan, step by step:", "How it is done:", "Procedure:")
OBSERVATION_INTROS = ("Current state:", "This is what the camera sees now:", "Latest observation:",
                      "Current observation:", "The frame to evaluate:", "Now:")  # fmt: skip
CHATTER = ("You are a careful assistant.", "Thanks in advance!", "The pictures come from a robot's camera.",
           "Please think about it before answering.", "Be precise.", "Look at every picture carefully.")  # fmt: skip
ASK_PERCENT = ("Reply with just a percentage, or n/a if it does not fit.",
               "Answer with one number between 0% and 100%, nothing else.",
               "What share of the task is done? Only the percentage, please.")  # fmt: skip
ASK_NOTHING = ("How far along is it?", "Estimate the task progress.", "Where are we in the task?")
ASK_TAGS = ("Write your reasoning about the closest demonstration item in <ref_think></ref_think>, its number in "
            "<ref></ref>, your comparison with it in <score_think></score_think> and the progress in "
            "<score></score>; n/a in each tag if nothing matches.")  # fmt: skip
SYSTEMS = ("You rate how much of a task has been done.", "You are a progress estimator for robot videos.")


@dataclass(frozen=True)
class Wording:
    """The words and layout one client chooses."""

    goal: str = GOAL_INTROS[0]
    demo: str = DEMO_INTROS[0]
    steps: str = STEP_INTROS[0]
    observation: str = OBSERVATION_INTROS[0]
    system: str | None = SYSTEMS[0]  # None: no system message
    chatter: tuple[str, ...] = ()  # sentences put between the sections
    labels: str = "before"  # keyframes: "before" ("Keyframe 2 (50%): <image>"), "after" ("<image> 50%"), "none"
    bullets: bool = False  # steps as "- step" instead of "1. step"
    step_labels: bool = True
    split: bool = False  # the observation (and the ask) in a second user message
    goal_last: bool = False  # the goal sentence after the observation
    ask: str = ASK_PERCENT[0]
    extra: dict = field(default_factory=dict)


def asked_format(ask: str) -> str:
    if ask in ASK_TAGS or "<score>" in ask:
        return "tags"
    return "percent" if ask in ASK_PERCENT else "mode"


def _chat(words: Wording, first: list[dict], second: list[dict]) -> list[dict]:
    messages = [{"role": "system", "content": words.system}] if words.system else []
    if words.split:
        return messages + [{"role": "user", "content": first}, {"role": "user", "content": second}]
    return messages + [{"role": "user", "content": first + second}]


def _chatter(words: Wording, k: int) -> list[dict]:
    return [text(words.chatter[k])] if k < len(words.chatter) else []


def plain_visual(sample: Sample, root: Path, words: Wording) -> list[dict]:
    demo = sample.demo
    paths = [sample.image_path(name, root) for name in sample.image_names()]
    goal = [text(words.goal.format(goal=sample.goal))]
    first = _chatter(words, 0) + ([] if words.goal_last else goal) + _chatter(words, 1) + [text(words.demo)]
    for k, path in enumerate(paths[:-1]):
        if words.labels == "before":
            first += [text(f"Keyframe {k + 1} ({pct(demo.progress_at(k))}):"), image(path)]
        elif words.labels == "after":
            first += [image(path), text(f" {pct(demo.progress_at(k))}")]
        else:
            first += [image(path)]
    second = _chatter(words, 2) + [text(words.observation), image(paths[-1])] + _chatter(words, 3)
    second += (goal if words.goal_last else []) + [text(words.ask)]
    return _chat(words, first, second)


def plain_text(sample: Sample, root: Path, words: Wording) -> list[dict]:
    demo = sample.demo
    lines = []
    for k, step in enumerate(demo.items):
        head = "- " if words.bullets else f"{k + 1}. "
        lines.append(head + step + (f" ({pct(demo.progress_at(k))})" if words.step_labels else ""))
    goal = [text(words.goal.format(goal=sample.goal))]
    first = _chatter(words, 0) + ([] if words.goal_last else goal) + _chatter(words, 1)
    first += [text(words.steps + "\n" + "\n".join(lines))]
    second = _chatter(words, 2) + [text(words.observation), image(sample.image_path(sample.observation, root))]
    second += _chatter(words, 3) + (goal if words.goal_last else []) + [text(words.ask)]
    return _chat(words, first, second)


def plain(sample: Sample, root: Path, words: Wording) -> list[dict]:
    return (plain_visual if sample.modality is Modality.VISUAL else plain_text)(sample, root, words)


# The authors' layout, in this file's words.
AUTHORS_SYSTEM = ("You judge how far along an ongoing task is from a demonstration of it: states of the task, each "
                  "with how much of the task it shows done, from the start to the end.")  # fmt: skip
AUTHORS_TAGS = ("Instructions:\n1. Study the state to judge.\n2. Find the demonstration item closest to it.\n"
                "3. Decide whether it is before or after that item.\n4. Give the progress between 0% and 100%.\n\n"
                "Reply exactly as:\n<ref_think>why that item</ref_think>\n<ref>its number, or \"n/a\"</ref>\n"
                "<score_think>how it compares, or \"n/a\"</score_think>\n<score>the progress, or \"n/a\"</score>")  # fmt: skip
AUTHORS_NOTHINK = ("Reply instructions:\nFrom the goal, the demonstration and the current picture, write ONLY the "
                   "progress as a percentage (0%-100%), or exactly \"n/a\" when it does not match; write nothing "
                   "else.")  # fmt: skip


def authors_visual(sample: Sample, root: Path, think: bool) -> list[dict]:
    paths = [sample.image_path(name, root) for name in sample.image_names()]
    listed = " ".join(f"<image> {pct(sample.demo.progress_at(k))}" for k in range(len(paths) - 1))
    content = [text(AUTHORS_SYSTEM), text(f"The overall goal is {sample.goal}"), text("This is the demonstration:")]
    content += [image(path) for path in paths[:-1]]
    content += [text(f"Progress across the demonstration images: {listed}"), text("The state you must judge:"),
                image(paths[-1]), text(AUTHORS_TAGS if think else AUTHORS_NOTHINK)]  # fmt: skip
    return [{"role": "user", "content": content}]


def authors_text(sample: Sample, root: Path, think: bool) -> list[dict]:
    blocks = [f"Step {k + 1}. {step}\nProgress at this point: {pct(sample.demo.progress_at(k))}."
              for k, step in enumerate(sample.demo.items)]  # fmt: skip
    content = [text(AUTHORS_SYSTEM), text(f"The overall goal is {sample.goal}."),
               text("This is the demonstration ([left] and [right] name the arms of a two-armed robot):"),
               text("\n\n".join(blocks)), text("The state you must judge:"),
               image(sample.image_path(sample.observation, root)), text(AUTHORS_TAGS if think else AUTHORS_NOTHINK)]  # fmt: skip
    return [{"role": "user", "content": content}]


def authors(sample: Sample, root: Path, think: bool) -> list[dict]:
    return (authors_visual if sample.modality is Modality.VISUAL else authors_text)(sample, root, think)


FRAME_ASKS = {
    "lines": "For each frame, write one line `Frame <number>: <progress>%`.",
    "json": "Return the progress of every frame as a JSON list of percentages, in the order the frames appear.",
}


def frames(samples: list[Sample], root: Path, order: list[int], answer: str, words: Wording) -> list[dict]:
    """One demonstration (the samples share it), then the samples' observations in `order`, named Frame 1, 2, ...
    in the order shown, and the ask for one answer per frame."""
    first = samples[0]
    demo = first.demo
    content = [text(words.goal.format(goal=first.goal))] + _chatter(words, 0)
    if demo.modality is Modality.VISUAL:
        content.append(text(words.demo))
        for k, name in enumerate(demo.items):
            content += [image(first.image_path(name, root)), text(f" {pct(demo.progress_at(k))}")]
    else:
        steps = "\n".join(f"{k + 1}. {step} ({pct(demo.progress_at(k))})" for k, step in enumerate(demo.items))
        content.append(text(words.steps + "\n" + steps))
    content.append(text("Frames to score, shuffled:"))
    for shown, index in enumerate(order):
        sample = samples[index]
        content += [text(f"Frame {shown + 1}:"), image(sample.image_path(sample.observation, root))]
    content += _chatter(words, 1) + [text(FRAME_ASKS[answer])]
    return [{"role": "user", "content": content}]
