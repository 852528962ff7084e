"""Follow a task frame by frame: a filtered progress estimate with an uncertainty band, and events.

`ProgressMonitor` sends each frame to a `ProgressScorer` and keeps, per frame, a `MonitorStep`:
the raw answer, a smoothed estimate with its band, and the `Event`s the frame raised.

    monitor = ProgressMonitor(ProgressScorer("open the drawer", keyframes))
    for frame, t in camera:
        step = monitor.update(frame, t)  # step.smoothed, step.low, step.high, step.events

Smoothing: a one-dimensional Kalman filter on a local-level model. Progress is a random walk (it
may go backwards: a robot can undo a step) whose variance grows by `process_noise**2` per second,
so the filter trusts a new answer more after a long gap than after a short one. An answer is a
measurement with standard deviation `measurement_noise`; with `samples > 1` the frame is asked
several times and the spread (standard deviation) of the draws is used instead, floored at
`min_noise` so that identical draws do not make the filter certain. The band is the estimate
+- `band_sigmas` standard deviations, clipped to [0, 1]. N/A frames and unreadable replies do not
move the estimate; its band still widens with the time that passes.

Events, each at the frame that raised it:

- `progress`: the smoothed estimate first reaches a milestone. `milestones="tenths"` (default):
  10 %, 20 %, ... 90 %; `"steps"`: the demonstration's step boundaries k/T, k < T; or a list of
  fractions. Each milestone fires once; a frame that passes several raises one event naming them.
  100 % is left to `done`, which a filtered estimate reaches through `done_threshold`.
- `stall`: no gain of `min_gain` over the level of the last gain (or of the last regression) for
  `stall_seconds` (or `stall_frames`, whichever comes first); once per stall, re-armed by the
  next gain; none after `done`. N/A frames count: time passes without progress.
- `regression`: the smoothed estimate falls `regression_drop` below its running maximum; once,
  re-armed when it climbs back within half of `regression_drop` of that maximum.
- `done`: the smoothed estimate is at least `done_threshold` on `done_frames` answered frames
  in a row (N/A frames neither count nor break the run); once.
- `off_task`: `off_task_frames` frames in a row answered N/A or unreadably; once per run of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from progresslm.metrics import spearman
from progresslm.online.scorer import Estimate, ScorerError, as_pil
from progresslm.types import Status, is_number

EVENT_KINDS = ("progress", "stall", "regression", "done", "off_task")
# No gain for this long is a stall (`watch --stall-seconds`, the server's monitor). From the done/stall study over
# every family's success, failure, random and stall videos (experiments/done_stall_study.py, results in
# experiments/results/done_stall.md): with done at 95 % for 2 frames (kept: lower thresholds buy done events only
# with false dones), 5 s finds 50 % of Meta-World's stalls (3-4 s holds) at 20 % false stalls on its successes,
# where 10 s found 10 % (0 %); pooled over the families 17 % of stalls at 7 % false stalls against 3 % / 0 %.
DEFAULT_STALL_SECONDS = 5.0
MILESTONE_PRESETS = ("tenths", "steps")
_EPS = 1e-9  # a milestone or threshold met up to float rounding counts as met


class MonitorError(ValueError):
    """A bad argument to a monitor: says which one, what was wrong and what to give instead."""


def value_order_correlation(steps) -> float | None:
    """VOC: Spearman's rho of the raw answers against time over the answered frames (as OpenGVL reads a
    progress curve: 1 when the answers only ever rise); None with fewer than 2 answers or all equal.

    >>> from types import SimpleNamespace as S
    >>> value_order_correlation([S(t=0, raw=0.1), S(t=1, raw=0.3), S(t=2, raw=None), S(t=3, raw=0.2)])
    0.5
    """
    answered = [(s.t, s.raw) for s in steps if s.raw is not None]
    if len(answered) < 2 or len({raw for _, raw in answered}) < 2:
        return None
    rho = spearman([t for t, _ in answered], [raw for _, raw in answered])
    return None if math.isnan(rho) else round(float(rho), 4)


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction * 100.0, 2)


@dataclass
class Event:
    """Something worth telling a caller about, raised by the frame `index` taken at time `t`."""

    kind: str  # one of EVENT_KINDS
    index: int
    t: float
    progress: float | None  # smoothed progress in [0, 1] at that frame (None before any answer)
    detail: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "index": self.index, "t": round(self.t, 4),
                "progress": _pct(self.progress), "detail": self.detail}  # fmt: skip


@dataclass
class MonitorStep:
    """One frame: the raw answer (mean of the answered draws), the filtered estimate and band, events.

    Fractions in [0, 1] here; `to_dict` writes percentages (0-100) for JSON.
    """

    index: int
    t: float
    raw: float | None
    status: str  # a `Status` value: "value", "na" or "parse_failure"
    anchor: int | None
    smoothed: float | None
    low: float | None
    high: float | None
    events: list[Event] = field(default_factory=list)
    spread: float | None = None  # standard deviation of the answered draws (samples > 1)
    latency_s: float = 0.0  # model time spent on this frame, all draws together
    reply: str = ""  # the first draw's reply text, to see why a frame was N/A

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "t": round(self.t, 4),
            "raw": _pct(self.raw),
            "status": self.status,
            "anchor": self.anchor,
            "smoothed": _pct(self.smoothed),
            "low": _pct(self.low),
            "high": _pct(self.high),
            "spread": _pct(self.spread),
            "latency_s": round(self.latency_s, 4),
            "events": [event.to_dict() for event in self.events],
            "reply": self.reply,
        }


@dataclass(frozen=True)
class _Reading:
    """The draws of one frame combined."""

    raw: float | None
    status: Status
    anchor: int | None
    spread: float | None
    latency_s: float
    reply: str


def combine_draws(draws: Sequence[Estimate]) -> _Reading:
    """One frame's answer from its draws: N/A (or unreadable) when more than half of the draws are,
    otherwise the mean of the answered draws, the most common anchor among them and their spread."""
    values = [d for d in draws if d.status is Status.VALUE and d.progress is not None]
    latency = sum(d.latency_s for d in draws)
    reply = draws[0].reply if draws else ""
    if len(values) * 2 < len(draws) or not values:
        statuses = Counter(d.status for d in draws)
        status = Status.NA if statuses[Status.NA] >= statuses[Status.PARSE_FAILURE] else Status.PARSE_FAILURE
        return _Reading(None, status, None, None, latency, reply)
    numbers = [d.progress for d in values]
    mean = sum(numbers) / len(numbers)
    spread = None
    if len(numbers) > 1:
        spread = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
    anchors = Counter(d.anchor for d in values if d.anchor is not None)
    anchor = anchors.most_common(1)[0][0] if anchors else None
    return _Reading(min(max(mean, 0.0), 1.0), Status.VALUE, anchor, spread, latency, reply)


@dataclass
class _LevelFilter:
    """Kalman filter on a random-walk level; `x` is None until the first measurement."""

    process_noise: float  # standard deviation of the level's change over one second
    x: float | None = None
    var: float = 0.0
    t: float | None = None

    def predict(self, t: float) -> None:
        if self.x is not None and self.t is not None:
            self.var += self.process_noise**2 * max(t - self.t, 0.0)
        self.t = t

    def update(self, z: float, noise: float) -> None:
        if self.x is None:
            self.x, self.var = z, noise**2
            return
        gain = self.var / (self.var + noise**2)
        self.x = min(max(self.x + gain * (z - self.x), 0.0), 1.0)
        self.var *= 1.0 - gain


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise MonitorError(message)


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    none = " or None" if optional else ""
    _require(ok, f"{name}: expected a whole number >= {minimum}{none}, got {value!r}")


def _check_fraction(name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    above = is_number(value) and (value > low if low_open else value >= low)
    ok = above and (value < high if high_open else value <= high)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _require(ok, f"{name}: expected a number in {interval} (a fraction of the task, 0.05 = 5 %), got {value!r}")


class ProgressMonitor:
    """Feeds frames to a scorer and follows progress: see the module docstring for the filter and events.

    `samples`: draws per frame; above 1 the backend must sample (temperature > 0), else every draw
    is the same and the band says nothing. Times are in seconds (any monotonic clock).
    Thread-safe: updates are serialised.
    """

    def __init__(
        self,
        scorer: Any,
        *,
        samples: int = 1,
        stall_seconds: float | None = DEFAULT_STALL_SECONDS,
        stall_frames: int | None = None,
        min_gain: float = 0.02,
        regression_drop: float = 0.10,
        done_threshold: float = 0.95,
        done_frames: int = 2,
        off_task_frames: int = 3,
        process_noise: float = 0.10,  # per sqrt(second): follows a new level within ~2 s at 1-2 frames/s
        measurement_noise: float = 0.10,  # one answer's error: models are off by ~10 points on benchmarks
        min_noise: float = 0.02,  # floor on the draws' spread: agreeing draws are not proof
        band_sigmas: float = 2.0,  # +-2 sigma: about a 95 % band if the errors were Gaussian
        milestones: str | Sequence[float] = "tenths",
    ):
        _require(callable(getattr(scorer, "score", None)), "scorer: expected a ProgressScorer (an object with a "
                 f"score(frames) method), got {type(scorer).__name__}")  # fmt: skip
        _check_int("samples", samples, 1)
        if stall_seconds is not None:
            _require(is_number(stall_seconds) and stall_seconds > 0, "stall_seconds: expected a number of seconds "
                     f"> 0 or None (no time-based stalls), got {stall_seconds!r}")  # fmt: skip
        _check_int("stall_frames", stall_frames, 1, optional=True)
        _check_fraction("min_gain", min_gain, 0.0, 1.0, low_open=True, high_open=True)
        _check_fraction("regression_drop", regression_drop, 0.0, 1.0, low_open=True, high_open=False)
        _check_fraction("done_threshold", done_threshold, 0.0, 1.0, low_open=True, high_open=False)
        _check_int("done_frames", done_frames, 1)
        _check_int("off_task_frames", off_task_frames, 1)
        for name, value in (("process_noise", process_noise), ("measurement_noise", measurement_noise),
                            ("min_noise", min_noise), ("band_sigmas", band_sigmas)):  # fmt: skip
            _require(is_number(value) and value > 0, f"{name}: expected a number > 0, got {value!r}")
        if samples > 1:
            temperature = getattr(getattr(getattr(scorer, "backend", None), "options", None), "temperature", None)
            _require(temperature is None or temperature > 0,
                     f"samples={samples} asks the backend {samples} times per frame, but its temperature is "
                     f"{temperature} (greedy), so every draw is the same: build the scorer with "
                     "BackendOptions(temperature=0.7) or similar (--temperature on the command line), "
                     "or use samples=1")  # fmt: skip
        self.scorer = scorer
        self.samples = samples
        self.stall_seconds = None if stall_seconds is None else float(stall_seconds)
        self.stall_frames = stall_frames
        self.min_gain = float(min_gain)
        self.regression_drop = float(regression_drop)
        self.done_threshold = float(done_threshold)
        self.done_frames = done_frames
        self.off_task_frames = off_task_frames
        self.process_noise = float(process_noise)
        self.measurement_noise = float(measurement_noise)
        self.min_noise = float(min_noise)
        self.band_sigmas = float(band_sigmas)
        self.milestones = self._resolve_milestones(milestones)
        self._lock = threading.Lock()
        self.reset()

    def _resolve_milestones(self, milestones: str | Sequence[float]) -> tuple[float, ...]:
        if isinstance(milestones, str):
            if milestones == "tenths":
                return tuple(k / 10 for k in range(1, 10))
            if milestones == "steps":
                steps = getattr(getattr(self.scorer, "demo", None), "total_steps", None)
                _require(isinstance(steps, int) and steps >= 1,
                         "milestones: 'steps' needs a scorer with a demonstration (scorer.demo.total_steps)")
                return tuple(k / steps for k in range(1, steps))
            raise MonitorError(f"milestones: {milestones!r} is not one of {', '.join(MILESTONE_PRESETS)} "
                               "or a list of fractions")  # fmt: skip
        try:
            values = list(milestones)
        except TypeError:
            raise MonitorError("milestones: expected 'tenths', 'steps' or a list of fractions, "
                               f"got {milestones!r}") from None
        for i, value in enumerate(values):
            _require(is_number(value) and 0 < value <= 1,
                     f"milestones[{i}]: expected a fraction in (0, 1] (0.25 = 25 %), got {value!r}")  # fmt: skip
        return tuple(sorted(set(float(v) for v in values)))

    def reset(self) -> None:
        """Forget every frame and event; keep the scorer and the settings."""
        with self._lock:
            self.history: list[MonitorStep] = []
            self.events: list[Event] = []
            self._filter = _LevelFilter(self.process_noise)
            self._reached: set[float] = set()
            self._max: float | None = None
            self._regressed = False
            self._gain_level: float | None = None
            self._gain_t = 0.0
            self._gain_index = 0
            self._stalled = False
            self._done_run = 0
            self._done: Event | None = None
            self._off_run = 0

    # ---- feeding frames -------------------------------------------------------------------

    def update(self, frame: Any, timestamp: float | None = None) -> MonitorStep:
        """Score one frame (PIL image, HxWx3 array or image file) taken at `timestamp` (default: now)."""
        return self.update_many([frame], None if timestamp is None else [timestamp])[0]

    def update_many(self, frames: Sequence[Any], timestamps: Sequence[float] | None = None) -> list[MonitorStep]:
        """Score frames as one batch, then filter them in order. Without `timestamps` every frame is
        taken now; give them when the frames span time (stalls and the filter run on time)."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            raise MonitorError("frames: update_many takes a list of frames; use update() for one frame")
        _require(not isinstance(frames, (str, bytes)), "frames: expected a list of frames, got one string")
        frames = list(frames)
        with self._lock:
            first = len(self.history)
            times = self._check_times(frames, timestamps)
            pils = []
            for offset, frame in enumerate(frames):
                try:
                    pils.append(as_pil(frame, f"frame {first + offset}"))
                except ScorerError as err:
                    raise MonitorError(str(err)) from None
            repeated = [pil for pil in pils for _ in range(self.samples)]
            # draw d of a frame is seeded apart from draw 0, so a sampling backend gives independent answers
            indices = [d for _ in pils for d in range(self.samples)]
            draws = self.scorer.score(repeated, draws=indices) if pils else []
            steps = []
            for offset, t in enumerate(times):
                reading = combine_draws(draws[offset * self.samples:(offset + 1) * self.samples])
                steps.append(self._step(first + offset, t, reading))
            return steps

    def _check_times(self, frames: list, timestamps: Sequence[float] | None) -> list[float]:
        if timestamps is None:
            now = time.monotonic()
            return [now] * len(frames)
        timestamps = list(timestamps)
        _require(len(timestamps) == len(frames),
                 f"timestamps: {len(timestamps)} given for {len(frames)} frames; give one per frame or none")
        previous = self.history[-1].t if self.history else -math.inf
        first = len(self.history)
        for offset, t in enumerate(timestamps):
            where = f"timestamps[{offset}] (frame {first + offset})"
            _require(is_number(t), f"{where}: expected a finite number of seconds, got {t!r}")
            _require(t >= previous,
                     f"{where}: {t} is earlier than the frame before it ({previous}); timestamps must not go back")
            previous = t
        return [float(t) for t in timestamps]

    # ---- one frame through the filter and the event rules -----------------------------------

    def _step(self, index: int, t: float, reading: _Reading) -> MonitorStep:
        flt = self._filter
        flt.predict(t)
        answered = reading.status is Status.VALUE
        if answered:
            noise = self.measurement_noise
            if reading.spread is not None:
                noise = max(reading.spread, self.min_noise)
            flt.update(reading.raw, noise)
        smoothed, low, high = flt.x, None, None
        if smoothed is not None:
            half = self.band_sigmas * math.sqrt(max(flt.var, 0.0))
            low, high = max(smoothed - half, 0.0), min(smoothed + half, 1.0)
        step = MonitorStep(index, t, reading.raw, reading.status.value, reading.anchor, smoothed, low, high,
                           [], reading.spread, reading.latency_s, reading.reply)  # fmt: skip
        self._off_task(step, answered)
        if smoothed is not None:
            if answered:
                self._regression(step)
                self._progress(step)
                self._done_rule(step)
            self._stall(step)
        self.history.append(step)
        self.events.extend(step.events)
        return step

    def _emit(self, step: MonitorStep, kind: str, detail: str) -> None:
        step.events.append(Event(kind, step.index, step.t, step.smoothed, detail))

    def _off_task(self, step: MonitorStep, answered: bool) -> None:
        if answered:
            self._off_run = 0
            return
        self._off_run += 1
        if self._off_run == self.off_task_frames:
            self._emit(step, "off_task", f"{self._off_run} frames in a row answered N/A or unreadably "
                                         "(the frames may not show this task)")  # fmt: skip

    def _regression(self, step: MonitorStep) -> None:
        x = step.smoothed
        self._max = x if self._max is None else max(self._max, x)
        if not self._regressed and self._max - x >= self.regression_drop - _EPS:
            self._regressed = True
            # Climbing back from here is progress again: the stall rule measures gains from here on.
            self._gain_level, self._gain_t, self._gain_index = x, step.t, step.index
            self._stalled = False
            self._emit(step, "regression", f"fell to {x:.0%} from a high of {self._max:.0%}")
        elif self._regressed and self._max - x <= self.regression_drop / 2:
            self._regressed = False

    def _progress(self, step: MonitorStep) -> None:
        passed = [m for m in self.milestones if m not in self._reached and step.smoothed >= m - _EPS]
        if passed:
            self._reached.update(passed)
            names = ", ".join(f"{m:.0%}" for m in passed)
            also = f" (passed {names})" if len(passed) > 1 else ""
            self._emit(step, "progress", f"reached {passed[-1]:.0%}{also}")

    def _done_rule(self, step: MonitorStep) -> None:
        if self._done is not None:
            return
        self._done_run = self._done_run + 1 if step.smoothed >= self.done_threshold - _EPS else 0
        if self._done_run >= self.done_frames:
            self._emit(step, "done", f"at or above {self.done_threshold:.0%} for {self._done_run} answered frames")
            self._done = step.events[-1]

    def _stall(self, step: MonitorStep) -> None:
        x = step.smoothed
        if self._gain_level is None or x >= self._gain_level + self.min_gain - _EPS:
            self._gain_level, self._gain_t, self._gain_index = x, step.t, step.index
            self._stalled = False
            return
        if self._stalled or self._done is not None:
            return
        waited_s, waited_frames = step.t - self._gain_t, step.index - self._gain_index
        by_time = self.stall_seconds is not None and waited_s >= self.stall_seconds - _EPS
        by_frames = self.stall_frames is not None and waited_frames >= self.stall_frames
        if by_time or by_frames:
            self._stalled = True
            self._emit(step, "stall", f"no gain of {self.min_gain:.0%} for {waited_s:.1f} s ({waited_frames} frames) "
                                      f"since frame {self._gain_index}, at {self._gain_level:.0%}")  # fmt: skip

    # ---- reading the state ----------------------------------------------------------------

    def summary(self) -> dict:
        """The state so far, JSON-able, progress in percent."""
        with self._lock:
            statuses = Counter(step.status for step in self.history)
            last = next((s for s in reversed(self.history) if s.smoothed is not None), None)
            latest = self.history[-1] if self.history else None
            return {
                "frames": len(self.history),
                "answered": statuses[Status.VALUE.value],
                "na": statuses[Status.NA.value],
                "parse_failures": statuses[Status.PARSE_FAILURE.value],
                "progress": _pct(latest.smoothed) if latest else None,
                "low": _pct(latest.low) if latest else None,
                "high": _pct(latest.high) if latest else None,
                "max_progress": _pct(self._max),
                "last_raw": _pct(last.raw) if last else None,
                "done": self._done is not None,
                "done_at": None if self._done is None else {"index": self._done.index, "t": round(self._done.t, 4)},
                "stalled": self._stalled,
                "off_task": self._off_run >= self.off_task_frames,
                "events": {kind: sum(e.kind == kind for e in self.events) for kind in EVENT_KINDS},
                "duration_s": round(self.history[-1].t - self.history[0].t, 4) if self.history else 0.0,
                "mean_latency_s": round(sum(s.latency_s for s in self.history) / len(self.history), 4)
                if self.history else None,  # fmt: skip
                "samples": self.samples,
                "voc": value_order_correlation(self.history),
            }

    def settings(self) -> dict:
        """The monitor's parameters, JSON-able (fractions as given, not percent)."""
        return {
            "samples": self.samples,
            "stall_seconds": self.stall_seconds,
            "stall_frames": self.stall_frames,
            "min_gain": self.min_gain,
            "regression_drop": self.regression_drop,
            "done_threshold": self.done_threshold,
            "done_frames": self.done_frames,
            "off_task_frames": self.off_task_frames,
            "process_noise": self.process_noise,
            "measurement_noise": self.measurement_noise,
            "min_noise": self.min_noise,
            "band_sigmas": self.band_sigmas,
            "milestones": list(self.milestones),
        }
