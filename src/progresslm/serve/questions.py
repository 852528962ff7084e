"""A progress question read from the structure of a chat request, whoever wrote the prompt.

A request is a progress question when it carries a goal in text, a demonstration (keyframe images or a list of
steps) and at least one observation image. `read_question` finds them by their place in the messages, not by one
client's wording:

- the messages are flattened into one sequence of text and images (system and user messages, in order; each
  text part on its own line), so one user message or several, with a system message or none, read alike;
- a keyframe's progress is a percentage written right before it ("Keyframe 2 (50%): <image>"), right after it
  ("<image> 50%", "<image> progress: 50%") or in a list of `<image> P%` markers after a run of images (the
  ProgressLM authors' evaluation prompts). Images after the last labelled one are the observations; without any
  label the last image is the observation and the ones before it the demonstration, evenly spaced in progress
  (noted in `Question.assumed`);
- the goal is the rest of the sentence after "goal" or "task" (or "objective", "instruction") and a connector
  ("Task: ...", "The overall task goal is ...", "for the task of ...");
- a text demonstration is a numbered or bulleted list before the observation, each item's progress at the end
  of its line or on the line after it;
- several observations after the demonstration ask for the progress of each (GVL-style prompts, frames in any
  order): one answer per frame, in the order they appear, named as the prompt names them ("Frame 3");
- the reply format is what the instructions ask for (`ANSWERS`).

What cannot be read is a `NotAQuestion` naming what was missing (goal, demonstration, observation).
Every regular expression here is anchored or bounded, so the work stays linear in the prompt's length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from progresslm.types import Demo, Modality

IMAGE_MARK = "\x00"  # stands for an image in the flattened text; a request's own NUL characters are removed first
# How a reply is written: the four tags, the score tag only, a bare percentage, one line per frame, a JSON list of
# percentages, or (nothing asked) the server's --mode.
ANSWERS = ("tags", "score-tag", "percent", "lines", "json", "mode")

_PERCENT = r"(\d{1,3}(?:\.\d{1,4})?)[ \t]{0,3}%"
# A label right before an image: the text ends with a percentage and at most some punctuation ("(50%): ").
_BEFORE = re.compile(_PERCENT + r"[ \t):\]\-–—,=]{0,8}$")
# A label right after an image: a percentage at once, or after a few words and a colon ("progress: 50%").
_AFTER = re.compile(r"[ \t]{0,8}\n?[ \t]{0,8}[(\[:\-–—=]?[ \t]{0,3}(?:[A-Za-z][A-Za-z ]{0,30}[:=][ \t]{0,3})?" + _PERCENT)
# The authors' list of keyframe progress: "<image> 0% <image> 25% ...".
_LISTED = re.compile(r"<\s{0,2}(?:image|img)\s{0,2}>[ \t:\-]{0,4}" + _PERCENT, re.IGNORECASE)
# A frame's name right before an observation image ("Frame 3: ", "image #2 -").
_NAME = re.compile(r"([A-Za-z]{1,12})[ \t]{0,3}#?[ \t]{0,2}(\d{1,4})[ \t]{0,3}[:.)\-–—]?[ \t]{0,3}$")
# Where the goal starts, best first: after "goal" and a connector, after "task" (or "objective", "instruction") and a
# colon, after "task is" / "task of".
_GOAL = (
    re.compile(r"\bgoal\b[ \t]{0,3}(?::|-|–|—|=|\bis\b)", re.IGNORECASE),
    re.compile(r"\b(?:task|objective|instruction)\b(?:[ \t]{1,3}description)?[ \t]{0,3}(?::|-|–|—|=)", re.IGNORECASE),
    re.compile(r"\b(?:task|objective)\b[ \t]{1,3}(?:is|of)\b", re.IGNORECASE),
)
# A candidate that speaks of the estimate itself ("your task is to estimate the progress") is not the goal.
_ABOUT_ESTIMATE = re.compile(r"\b(?:progress|estimat\w*|percent\w*|completion|predict\w*)\b", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"
_NUMBERED = re.compile(r"[ \t]{0,8}(?:step[ \t]{0,3})?(\d{1,3})[ \t]{0,3}[.):\-][ \t]{1,8}(\S.*)$", re.IGNORECASE)
_BULLET = re.compile(r"[ \t]{0,8}[-*•][ \t]{1,8}(\S.*)$")
# A step's progress at the end of its line: "(ends at 50%)", "[50%]", "- 50%", ": 50%".
_STEP_PERCENT = re.compile(r"[ \t]{0,3}(?:[(\[][^()\[\]\n]{0,30}?" + _PERCENT + r"[ \t]{0,3}[)\]]|[,:;\-–—][ \t]{0,3}"
                           + _PERCENT + r")[ \t]{0,3}\.?[ \t]{0,3}$")  # fmt: skip
# The words that ask for one answer per frame, and those that ask for a number.
_EACH = re.compile(r"\b(?:each|every|json)\b|\bper[ -](?:frame|image)|\ball (?:the |of the |these |those )?"
                   r"(?:frames|images|observations)\b|\bone (?:line|answer|value|number) (?:per|for each)\b",
                   re.IGNORECASE)  # fmt: skip
_NUMBER_ASKED = re.compile(r"percent|\bnumber\b|\bvalue\b|\bscore\b|%|\bn/a\b", re.IGNORECASE)
_OBSERVATION_WORDS = re.compile(r"current|now\b|observ|estimate|query|queries|following|predict|evaluate|assess|rate|"
                                r"new\b|latest|\bthese\b|judge|frames? to|to score", re.IGNORECASE)  # fmt: skip


class NotAQuestion(ValueError):
    """The messages do not hold a progress question; `missing` names what could not be found."""

    WHAT = {
        "goal": "goal (the sentence after 'goal' or 'task', e.g. 'Task: open the drawer.')",
        "demonstration": "demonstration (keyframe images before the observation, or a numbered or bulleted list "
        "of steps)",
        "observation": "observation image (the last image, after the demonstration)",
    }

    def __init__(self, missing: list[str], detail: str = ""):
        self.missing = missing
        listed = "; ".join(f"no {self.WHAT[name]}" for name in missing)
        super().__init__(f"not a progress question: {listed}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Frame:
    """One observation asked about: its image (index among the request's images) and what the prompt calls it."""

    image: int
    name: str


@dataclass(frozen=True)
class Question:
    """What a request asks: the goal, the demonstration, the observations and the reply format."""

    structure: str  # "authors" (the ProgressLM authors' evaluation prompts), "plain" or "frames" (several frames)
    goal: str
    modality: Modality
    demo_images: tuple[int, ...]  # keyframe image indices (visual)
    steps: tuple[str, ...]  # step texts (text)
    points: tuple[float, ...] | None  # each item's progress in [0, 1] as labelled; None when assumed even
    frames: tuple[Frame, ...]
    answer: str  # one of ANSWERS
    assumed: tuple[str, ...] = field(default=())

    def demo(self, image_names: list[str]) -> Demo:
        """The demonstration over `image_names` (one name per request image), as the toolkit's `Demo`.

        Labels that sit where the protocol puts them (keyframe i of T+1 at i/T, step k of T at k/T, as prompts
        round them) give the plain `Demo` that `progresslm eval` builds; other labels a `LabelledDemo`."""
        if self.modality is Modality.VISUAL:
            items = tuple(image_names[i] for i in self.demo_images)
            total = len(items) - 1
        else:
            items, total = self.steps, len(self.steps)
        demo = Demo(self.modality, items, total_steps=total)
        if self.points is None or _on_protocol_grid(self.points, demo):
            return demo
        return LabelledDemo(self.modality, items, total_steps=total, points=self.points)

    def describe(self) -> dict:
        """The reply metadata: what the server read."""
        kind = self.modality.value
        items = len(self.demo_images) if self.modality is Modality.VISUAL else len(self.steps)
        points = self.points if self.points is not None else _even(items, self.modality)
        return {
            "structure": self.structure,
            "goal": self.goal,
            "demonstration": {"kind": kind, "items": items, "progress": [round(100 * p, 2) for p in points]},
            "frames": [frame.name for frame in self.frames],
            "format": self.answer,
            "assumed": list(self.assumed),
        }


@dataclass(frozen=True)
class LabelledDemo(Demo):
    """A demonstration whose items carry the progress the client labelled them with, not the even spacing."""

    points: tuple[float, ...] = ()

    def progress_at(self, index: int) -> float:
        return self.points[index]


def _even(items: int, modality: Modality) -> tuple[float, ...]:
    if modality is Modality.VISUAL:
        return tuple(i / max(items - 1, 1) for i in range(items))
    return tuple((i + 1) / max(items, 1) for i in range(items))


def _on_protocol_grid(points: tuple[float, ...], demo: Demo) -> bool:
    """Labels as a prompt shows the even spacing: whole percents rounded (67) or truncated (66), or exact."""
    return all(abs(100 * p - 100 * demo.progress_at(i)) < 1.0 + 1e-9 for i, p in enumerate(points))


# -- flattening ------------------------------------------------------------------------------------------------


@dataclass
class _Flat:
    gaps: list[str]  # text before image 0, between images, after the last: len(images) + 1 pieces
    roles: list[str]  # the role of the message each image is in


def _flatten(messages: list[dict]) -> _Flat:
    """The system and user text and images in order; assistant turns (earlier answers) are left out."""
    gaps, roles, current = [], [], []
    for message in messages:
        if message["role"] == "assistant":
            continue
        current.append("\n\n")
        for part in message["content"]:
            if part["type"] == "image":
                gaps.append("".join(current))
                roles.append(message["role"])
                current = []
            else:
                current.append(part["text"].replace(IMAGE_MARK, "") + "\n")
    gaps.append("".join(current))
    return _Flat(gaps, roles)


# -- keyframe labels -------------------------------------------------------------------------------------------


def _tail(gap: str) -> str:
    """The end of the text before an image, without the line break that ends its part."""
    return gap.rstrip("\n")[-80:]


def _fraction(text: str) -> float | None:
    value = float(text)
    return value / 100.0 if 0.0 <= value <= 100.0 else None


def _labels(flat: _Flat) -> dict[int, float]:
    """Image index -> labelled progress, by the one convention that labels the most images."""
    n = len(flat.gaps) - 1
    before, after, listed = {}, {}, {}
    for i in range(n):
        found = _BEFORE.search(_tail(flat.gaps[i]))
        if found and _fraction(found.group(1)) is not None:
            before[i] = _fraction(found.group(1))
        found = _AFTER.match(flat.gaps[i + 1])
        if found and _fraction(found.group(1)) is not None:
            after[i] = _fraction(found.group(1))
    # A run of images with nothing between them, then a text listing one "<image> P%" per image.
    start = 0
    for i in range(n):
        if i + 1 < n and not flat.gaps[i + 1].strip():
            continue
        values = [_fraction(m.group(1)) for m in _LISTED.finditer(flat.gaps[i + 1])]
        if len(values) == i + 1 - start and None not in values:
            listed.update({start + k: value for k, value in enumerate(values)})
        start = i + 1
    best = max((listed, after, before), key=len)  # ties: the list, then labels after, then before
    return best


# -- goal ------------------------------------------------------------------------------------------------------


def _unquote(goal: str) -> str:
    """The goal as written, less quotes around it and the sentence's full stop: "'open it'." -> "open it",
    "open it." -> "open it", "put it in the box.." (a goal that ends with a full stop, then the sentence's) ->
    "put it in the box."."""
    if goal.endswith(".") and not goal.endswith("..."):
        goal = goal[:-1].rstrip()
    if len(goal) >= 2 and goal[0] in _QUOTES and goal[-1] in _QUOTES:
        goal = goal[1:-1].strip()
    return goal.rstrip(",;:").strip()


def _goal(text: str) -> str | None:
    for pattern in _GOAL:
        for found in pattern.finditer(text):
            line = text[found.end() : found.end() + 600].split("\n", 1)[0].split(IMAGE_MARK, 1)[0]
            line = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]  # the sentence: "Task: push it. Demo: ..."
            goal = _unquote(line.strip())
            if goal.lower().startswith("to "):  # "the goal is to open the drawer"
                goal = goal[3:].strip()
            if goal and any(char.isalpha() for char in goal) and not _ABOUT_ESTIMATE.search(goal):
                return goal
    return None


# -- text steps ------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    items: list[str]
    points: list[float | None]


def _step_text(line: str) -> tuple[str, float | None]:
    found = _STEP_PERCENT.search(line[-60:])
    if not found:
        return line.strip(), None
    value = found.group(1) or found.group(2)
    cut = len(line) - len(line[-60:]) + found.start()
    return line[:cut].strip(), _fraction(value)


def _runs(text: str) -> list[_Run]:
    """Numbered (1, 2, 3, ...) and bulleted lists, each item with its progress (or None)."""
    runs: list[_Run] = []
    current: _Run | None = None
    kind = None
    for line in text.split("\n"):
        numbered = _NUMBERED.match(line)
        bullet = None if numbered else _BULLET.match(line)
        if numbered and (int(numbered.group(1)) == 1 or (kind == "n" and current
                                                        and int(numbered.group(1)) == len(current.items) + 1)):  # fmt: skip
            if int(numbered.group(1)) == 1:
                current, kind = _Run([], []), "n"
                runs.append(current)
            step, point = _step_text(numbered.group(2))
            current.items.append(step)
            current.points.append(point)
        elif bullet:
            if kind != "b" or current is None:
                current, kind = _Run([], []), "b"
                runs.append(current)
            step, point = _step_text(bullet.group(1))
            current.items.append(step)
            current.points.append(point)
        elif current is not None and line.strip():
            found = re.search(_PERCENT, line) if len(line) <= 80 else None
            if found and current.points[-1] is None and len(re.findall(_PERCENT, line)) == 1:
                current.points[-1] = _fraction(found.group(1))  # "The progress is now 33%." under its step
            else:
                current, kind = None, None
    return [run for run in runs if run.items]


def _steps(text: str) -> _Run | None:
    runs = _runs(text)
    labelled = [run for run in runs if all(p is not None for p in run.points)]
    return (labelled or runs or [None])[-1]


# -- the question ----------------------------------------------------------------------------------------------


def _answer(text: str, several: bool) -> str:
    """The reply format the prompt asks for (`ANSWERS`); percentages that label the demonstration do not count."""
    if several:
        return "json" if re.search(r"\bjson\b", text, re.IGNORECASE) else "lines"
    lowered = text.lower()
    if "<score>" in lowered:
        return "tags" if "<ref>" in lowered else "score-tag"
    return "percent" if _NUMBER_ASKED.search(re.sub(_PERCENT, " ", text)) else "mode"


def _frame_names(flat: _Flat, images: list[int]) -> tuple[Frame, ...]:
    frames = []
    for k, i in enumerate(images):
        found = _NAME.search(_tail(flat.gaps[i]))
        name = f"{found.group(1).capitalize()} {found.group(2)}" if found else f"Frame {k + 1}"
        frames.append(Frame(i, name))
    if len({frame.name for frame in frames}) < len(frames):  # names that do not tell the frames apart
        frames = [Frame(i, f"Frame {k + 1}") for k, i in enumerate(images)]
    return tuple(frames)


def _split(flat: _Flat) -> int | None:
    """Without labels: where the observations start, at the gap between images that introduces them."""
    n = len(flat.gaps) - 1
    for i in range(1, n):
        gap = _NAME.sub("", _tail(flat.gaps[i]).rstrip()).strip()
        if len(gap) > 3 and _OBSERVATION_WORDS.search(gap):
            return i
    return None


def read_question(messages: list[dict]) -> Question:
    """The progress question in `messages` (prompt form: parts `{"type": "text"}` / `{"type": "image"}`).

    Raises `NotAQuestion` naming what is missing."""
    flat = _flatten(messages)
    n = len(flat.gaps) - 1
    text = IMAGE_MARK.join(flat.gaps)
    goal = _goal(text)
    missing = [] if goal else ["goal"]
    if n == 0:
        missing += ([] if _steps(text) else ["demonstration"]) + ["observation"]
        raise NotAQuestion(missing, "the request has no image")
    assumed: list[str] = []
    labels = _labels(flat)
    if n - 1 in labels:  # the last image is the one asked about, whatever percentage sits beside it
        del labels[n - 1]
        if labels:
            assumed.append("the last image is the observation (a percentage beside it was not read as its label)")
    several_asked = bool(_EACH.search(text))
    if labels:
        demo_images, observations = list(range(max(labels) + 1)), list(range(max(labels) + 1, n))
    else:
        split = _split(flat) if several_asked else None
        steps = _steps(flat.gaps[0]) if n >= 2 else None
        if split is not None and n - split >= 2:
            demo_images, observations = list(range(split)), list(range(split, n))
        elif steps is not None and several_asked and split is None:
            demo_images, observations = [], list(range(n))  # a text demonstration, then the frames to score
        else:
            demo_images, observations = list(range(n - 1)), [n - 1]
    steps = _steps(IMAGE_MARK.join(flat.gaps[: observations[0] + 1]))
    if len(demo_images) == 1:  # one image cannot show the start and the end: with steps it is not the demo
        if steps is None:
            raise NotAQuestion(missing + ["demonstration"], "one image before the observation; a visual "
                               "demonstration needs at least 2 keyframes, its start and its end")  # fmt: skip
        assumed.append("the image before the observation was left out: the steps are the demonstration")
        demo_images = []
    if not demo_images and steps is None:
        missing.append("demonstration")
    if missing:
        raise NotAQuestion(missing)
    several = len(observations) > 1
    if demo_images:
        modality, step_texts, points = Modality.VISUAL, (), [labels.get(i) for i in demo_images]
        unit = "keyframes"
    else:
        modality, step_texts, points, unit = Modality.TEXT, tuple(steps.items), steps.points, "steps"
    if all(p is None for p in points):
        assumed.append(f"{unit} evenly spaced in progress (no labels)")
        points = None
    elif any(p is None for p in points):
        assumed.append(f"some {unit} had no progress label: all taken as evenly spaced")
        points = None
    elif any(b < a for a, b in zip(points, points[1:])):
        assumed.append(f"{unit}' labels do not increase: taken as evenly spaced")
        points = None
    frames = _frame_names(flat, observations) if several else (Frame(observations[0], ""),)
    return Question(structure="frames" if several else _structure(flat, labels, n), goal=goal, modality=modality,
                    demo_images=tuple(demo_images), steps=step_texts, points=None if points is None else tuple(points),
                    frames=frames, answer=_answer(text, several), assumed=tuple(assumed))  # fmt: skip


def _structure(flat: _Flat, labels: dict[int, float], n: int) -> str:
    """"authors" when the keyframes' progress came as one "<image> P%" list (or the steps as the authors write
    them, each with its progress on the line below), else "plain"."""
    text = IMAGE_MARK.join(flat.gaps)
    if labels and any(len(_LISTED.findall(gap)) == len(labels) for gap in flat.gaps):
        return "authors"
    if n == 1 and re.search(r"\n[ \t]{0,8}step[ \t]{0,3}1[ \t]{0,3}[.:][^\n]*\n[^\n\d]{0,60}" + _PERCENT, text,
                            re.IGNORECASE):  # fmt: skip
        return "authors"
    return "plain"
