"""Shortcut baselines: what a model must beat before its numbers mean anything.

`ConstantBackend` always answers the same percentage; `RandomBackend` answers a uniform random one.
Neither looks at an image or a label. In two-stage mode both write a well-formed reply whose anchor
is the demonstration step nearest to the value they answer, so the anchor metrics get a floor too.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Iterator, Sequence

from progresslm.backends.base import Backend, BackendOptions, Reply, Request
from progresslm.types import Sample


def nearest_step(sample: Sample, fraction: float) -> int:
    """1-based index of the demonstration item whose progress is nearest `fraction` (first on ties)."""
    points = sample.demo.progress_points()
    if not points:
        return 1
    return min(range(len(points)), key=lambda i: abs(points[i] - fraction)) + 1


def format_reply(percent: float, sample: Sample, mode: str, why: str) -> str:
    """A reply in the format the prompt asks for: "37%" (direct) or the tagged two-stage form."""
    value = f"{percent:g}%"
    if mode != "two-stage":
        return value
    step = nearest_step(sample, percent / 100.0)
    return (
        f"<ref_think>{why} Step {step} is the demonstration step nearest to {value}.</ref_think>"
        f"<ref>{step}</ref>"
        f"<score_think>{why}</score_think>"
        f"<score>{value}</score>"
    )


class _Floor(Backend):
    """A baseline that answers each request from its uid and draw alone."""

    # A class default that an instance may override: a benchmark sets "data_url" to time encoding.
    image_format = "none"
    why = ""

    @abstractmethod
    def percent(self, request: Request) -> float:
        """The percentage this floor answers for `request`."""

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        for index, request in enumerate(requests):
            yield index, Reply(text=format_reply(self.percent(request), request.sample, self.mode, self.why))


class ConstantBackend(_Floor):
    """Always answers `options.value` percent."""

    why = "A constant baseline gives the same answer to every observation."

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)
        self.value = min(max(float(options.value), 0.0), 100.0)

    @property
    def model_name(self) -> str:
        return f"constant-{self.value:g}%"

    def percent(self, request: Request) -> float:
        return self.value


class RandomBackend(_Floor):
    """A uniform random percentage in [0, 100], one decimal, drawn from a hash of (seed, uid, draw):
    the same request gets the same answer whatever the order or chunking of the run."""

    why = "A random baseline guesses without looking."

    @property
    def model_name(self) -> str:
        return "random"

    def percent(self, request: Request) -> float:
        key = f"{self.options.seed}\x00{request.uid}\x00{request.draw}".encode()
        unit = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64  # in [0, 1)
        return round(unit * 100.0, 1)
