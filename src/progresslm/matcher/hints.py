"""Retrieval hints: the matcher's comparison of the observation with the demonstration, as prompt text.

`--hints matcher` (any backend; off by default, so the paper's protocol is unchanged) adds one line
before the question:

    Matcher hints: similarity to keyframe 1: 0.12, 2: 0.81, 3: 0.40, 4: 0.10, 5: 0.05; its estimate: 2, 27%;
    mismatch: 0.07.

(for a text demonstration: "to the start: ..., step 1: ..."). The similarities are the matcher's
cosines, the estimate its anchor and progress, the mismatch its N/A probability (", it says n/a" follows
when that is above the matcher's threshold, and the estimate is then left out). A model that reads the
hints gets a comparison it did not have to learn; nano is trained with them, so its answers follow the
demonstration on tasks it never saw.

`HintProvider` computes them. For samples of tasks a matcher was trained on, hints from that matcher
would be better than anywhere else (it has seen those very frames), and a model trained on them
would learn to trust hints more than they deserve. So `progresslm train matcher --folds K` also
trains K matchers on K-1 of K task folds each, and the provider answers a training task's samples
with the matcher that did not see that task (cross-fitting, as in stacking).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from progresslm.checkpoints import weights_id
from progresslm.matcher import MATCHER_DIR
from progresslm.matcher.inference import MatcherRunner
from progresslm.matcher.modeling_matcher import MatchResult
from progresslm.types import Modality, Sample, task_of

HINT_SOURCES = ("matcher",)
HINTS_VERSION = "h2"  # h2: the matcher's own estimate (anchor, progress) and n/a call joined the similarities
FOLDS_FILE = "folds.json"  # in a matcher folder: {"folds": [{"dir": "folds/0", "tasks": [...]}, ...]}


class HintError(ValueError):
    """Hints that cannot be made (unknown source, missing matcher); the message says what to do."""


def hints_text(result: MatchResult | None, sample: Sample) -> str | None:
    """The hints line for one sample, or None when the matcher has no answer for it.

    >>> from progresslm.types import Demo
    >>> s = Sample("u", "t", "g", Demo(Modality.VISUAL, ("a", "b", "c"), 2), "o", 0.5, 2)
    >>> r = MatchResult((0.1, 0.8, 0.35), (0.0, 1.0, 0.0), 1.0, 0.5, 0.07, False)
    >>> hints_text(r, s)
    'Matcher hints: similarity to keyframe 1: 0.10, 2: 0.80, 3: 0.35; its estimate: 2, 50%; mismatch: 0.07.'
    >>> hints_text(MatchResult((0.1, 0.2, 0.15), (0.3, 0.4, 0.3), 1.0, 0.5, 0.91, True), s)
    'Matcher hints: similarity to keyframe 1: 0.10, 2: 0.20, 3: 0.15; mismatch: 0.91, it says n/a.'
    """
    if result is None:
        return None
    sims = [f"{value:.2f}" for value in result.similarities]
    if sample.modality is Modality.VISUAL:
        listed = f"keyframe 1: {sims[0]}" + "".join(f", {i + 1}: {s}" for i, s in enumerate(sims[1:], 1))
    else:
        listed = f"the start: {sims[0]}" + "".join(
            f", {'step ' if i == 1 else ''}{i}: {s}" for i, s in enumerate(sims[1:], 1)
        )
    if result.na:
        return f"Matcher hints: similarity to {listed}; mismatch: {result.p_na:.2f}, it says n/a."
    estimate = f"its estimate: {result.anchor}, {round(100 * result.progress)}%"
    return f"Matcher hints: similarity to {listed}; {estimate}; mismatch: {result.p_na:.2f}."


def check_source(source: str | None) -> str | None:
    if source in (None, "", "none"):
        return None
    if source not in HINT_SOURCES:
        raise HintError(f"unknown hints source {source!r}; valid: none, {', '.join(HINT_SOURCES)}")
    return source


class HintProvider:
    """Hints for samples from a matcher folder (default: the shipped matcher), cross-fitted when the
    folder has folds (`FOLDS_FILE`): a sample whose task a fold held out gets that fold's hints."""

    def __init__(self, folder: str | Path | None = None, features: str | Path | None = None, device: str = "cpu"):
        self.folder = Path(folder) if folder else MATCHER_DIR
        if not (self.folder / "config.json").is_file():
            raise HintError(
                f"hints: no matcher in {self.folder} (config.json missing); train one with "
                "`progresslm train matcher` or reinstall progresslm for the shipped one"
            )
        if features is None and self.folder != MATCHER_DIR and (self.folder.parent / "features").is_dir():
            features = self.folder.parent / "features"  # where `progresslm train matcher` cached them
        self.main = MatcherRunner(self.folder, device=device, features=features)
        self.by_task: dict[str, object] = {}
        folds = self.folder / FOLDS_FILE
        if folds.is_file():
            for fold in json.loads(folds.read_text())["folds"]:
                runner = MatcherRunner(self.folder / fold["dir"], device=device)
                runner.images, runner.texts = self.main.images, self.main.texts  # one cache for all
                runner._image_encoder = runner._text_encoder = None
                for task in fold["tasks"]:
                    self.by_task[task] = runner

    @property
    def name(self) -> str:
        """What made the hints (goes into a run's identity): the matcher's weights digest."""
        return f"matcher@{weights_id(self.folder)}/{HINTS_VERSION}"

    def hints(self, samples: Sequence[Sample], image_root: str | Path | None) -> dict[str, str]:
        """uid -> hints line for every sample the matcher can answer."""
        groups: dict[int, tuple[object, list[Sample]]] = {}
        for sample in samples:
            runner = self.by_task.get(task_of(sample), self.main)
            groups.setdefault(id(runner), (runner, []))[1].append(sample)
        out: dict[str, str] = {}
        for runner, members in groups.values():
            for sample, result in zip(members, runner.match(members, image_root)):
                text = hints_text(result, sample)
                if text is not None:
                    out[sample.uid] = text
        self.main.save()
        return out
