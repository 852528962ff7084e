"""ProgressMonitor: the filter, the band, and each event rule on scripted answer sequences."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from progresslm.backends.base import Backend, BackendOptions, Reply
from progresslm.online import ProgressScorer
from progresslm.online.monitor import Event, MonitorError, MonitorStep, ProgressMonitor, combine_draws
from progresslm.online.scorer import Estimate
from progresslm.types import Status

FRAME = np.full((8, 8, 3), 120, np.uint8)
DEMO = ["reach the handle", "pull the drawer", "let go"]
# A filter that trusts each answer almost fully: smoothed ~= raw, so event frames are hand-computable.
EXACT = {"measurement_noise": 0.001, "process_noise": 1.0}


class ScriptedBackend(Backend):
    """Answers requests in order from a script: a number (percent), "na", or "?" (unreadable)."""

    def __init__(self, script, temperature: float = 0.0):
        super().__init__(BackendOptions(temperature=temperature), "two-stage")
        self.script = list(script)
        self.batches: list[int] = []

    def generate(self, requests):
        self.batches.append(len(requests))
        for index, _ in enumerate(requests):
            answer = self.script.pop(0)
            if answer == "na":
                text = "<ref>n/a</ref><score>n/a</score>"
            elif answer == "?":
                text = "I cannot tell."
            else:
                text = f"<ref>2</ref><score>{answer}%</score>"
            yield index, Reply(text=text, latency_s=0.01)


def monitor_for(script, temperature: float = 0.0, **kwargs) -> ProgressMonitor:
    scorer = ProgressScorer("open the drawer", DEMO, backend=ScriptedBackend(script, temperature))
    return ProgressMonitor(scorer, **kwargs)


def run(script, **kwargs) -> ProgressMonitor:
    """Feed one frame per scripted answer, one second apart."""
    monitor = monitor_for(script, **kwargs)
    monitor.update_many([FRAME] * len(script), timestamps=[float(i) for i in range(len(script))])
    return monitor


def indices(monitor: ProgressMonitor, kind: str) -> list[int]:
    return [event.index for event in monitor.events if event.kind == kind]


def test_exact_filter_follows_the_answers():
    monitor = run([0, 25, 50, 25], **EXACT)
    assert [round(s.smoothed, 3) for s in monitor.history] == [0.0, 0.25, 0.5, 0.25]
    assert [s.raw for s in monitor.history] == [0.0, 0.25, 0.5, 0.25]
    assert all(s.status == "value" and s.anchor == 2 for s in monitor.history)


def test_the_filter_smooths_a_jump_and_the_band_holds_the_estimate():
    monitor = run([20, 20, 20, 80])
    last = monitor.history[-1]
    assert 0.2 < last.smoothed < 0.8  # pulled toward the new answer, not all the way
    for step in monitor.history:
        assert 0.0 <= step.low <= step.smoothed <= step.high <= 1.0
    widths = [s.high - s.low for s in monitor.history[:3]]
    assert widths[0] > widths[1] > widths[2]  # agreeing answers narrow the band


def test_a_long_gap_makes_the_filter_trust_the_next_answer_more():
    soon, late = monitor_for([20, 20, 20, 80]), monitor_for([20, 20, 20, 80])
    soon.update_many([FRAME] * 4, [0.0, 1.0, 2.0, 3.0])
    late.update_many([FRAME] * 4, [0.0, 1.0, 2.0, 60.0])
    assert soon.history[-1].smoothed < 0.6 < late.history[-1].smoothed < 0.8


def test_stall_after_a_plateau_once_and_rearmed_by_progress():
    script = [0, 10, 20, 30, 30, 30, 30, 30, 30, 30, 40, 40, 40, 40, 40]
    monitor = run(script, stall_seconds=3.0, **EXACT)
    # last gain at frame 3 (t=3): stalled at t=6; progress at frame 10 re-arms: stalled again at t=13
    assert indices(monitor, "stall") == [6, 13]
    assert "since frame 3, at 30%" in monitor.events[[e.kind for e in monitor.events].index("stall")].detail


def test_a_drift_below_min_gain_is_still_a_stall():
    monitor = run([50, 51, 52, 53, 54, 55], stall_seconds=4.0, min_gain=0.05, **EXACT)
    assert indices(monitor, "stall") == [4]


def test_stall_by_frames_without_timestamps():
    monitor = monitor_for([30, 30, 30, 30, 30], stall_seconds=None, stall_frames=3, **EXACT)
    monitor.update_many([FRAME] * 5)  # all taken "now": only the frame count can stall
    assert indices(monitor, "stall") == [3]
    assert monitor.summary()["stalled"] is True


def test_regression_once_then_rearmed_after_recovery():
    script = [0, 20, 40, 60, 60, 45, 40, 55, 60, 70, 50]
    monitor = run(script, regression_drop=0.10, stall_seconds=None, **EXACT)
    # 60 -> 45 drops 15 points: event; 40 stays regressed; 55 is within 5 of 60: re-armed; 70 -> 50: event
    assert indices(monitor, "regression") == [5, 10]
    assert monitor.events[-1].detail == "fell to 50% from a high of 70%"


def test_done_needs_done_frames_in_a_row_and_fires_once():
    monitor = run([80, 96, 90, 96, "na", 97, 99, 100], done_threshold=0.95, done_frames=2, **EXACT)
    # 96 then 90 breaks the run; 96, (N/A neither counts nor breaks), 97 completes it
    assert indices(monitor, "done") == [5]
    summary = monitor.summary()
    assert summary["done"] is True and summary["done_at"] == {"index": 5, "t": 5.0}


def test_no_stall_after_done():
    monitor = run([50, 100, 100, 100, 100, 100, 100], stall_seconds=2.0, done_frames=1, **EXACT)
    assert indices(monitor, "done") == [1] and indices(monitor, "stall") == []


def test_off_task_once_per_run_of_na_or_unreadable_frames():
    script = [10, "na", "na", "na", "na", 20, "?", "na", "na", 30, "na"]
    monitor = run(script, off_task_frames=3, stall_seconds=None, **EXACT)
    assert indices(monitor, "off_task") == [3, 8]
    assert [s.status for s in monitor.history[5:8]] == ["value", "parse_failure", "na"]
    assert monitor.summary()["off_task"] is False
    assert monitor.summary()["na"] == 7 and monitor.summary()["parse_failures"] == 1


def test_na_does_not_move_the_estimate_but_the_band_widens_with_time():
    monitor = run([50, 60, "na", "na", "?"])
    steps = monitor.history
    assert steps[2].raw is None and steps[2].anchor is None
    assert steps[2].smoothed == steps[3].smoothed == steps[4].smoothed == steps[1].smoothed
    widths = [s.high - s.low for s in steps[1:]]
    assert widths[0] < widths[1] < widths[2] < widths[3]


def test_off_task_before_any_answer_has_no_estimate():
    monitor = run(["na", "na", "na"], off_task_frames=2)
    assert all(s.smoothed is None and s.low is None and s.high is None for s in monitor.history)
    assert indices(monitor, "off_task") == [1] and monitor.events[0].progress is None


def test_progress_milestones_tenths_and_demo_steps():
    monitor = run([0, 35, 36, 100], done_frames=5, **EXACT)
    progress = [e for e in monitor.events if e.kind == "progress"]
    assert [e.index for e in progress] == [1, 3]
    assert progress[0].detail == "reached 30% (passed 10%, 20%, 30%)"
    assert "passed 40%, 50%, 60%, 70%, 80%, 90%" in progress[1].detail

    steps = run([20, 34, 70, 100], milestones="steps", **EXACT)  # 3 text steps: 33 %, 67 %
    progress = [(e.index, e.detail) for e in steps.events if e.kind == "progress"]
    assert progress == [(1, "reached 33%"), (2, "reached 67%")]


def test_the_spread_of_draws_sets_the_band():
    agree = monitor_for([50, 50, 50] * 4, temperature=0.7, samples=3)
    spread = monitor_for([30, 50, 70] * 4, temperature=0.7, samples=3)
    single = monitor_for([50] * 4)
    for monitor in (agree, spread, single):
        monitor.update_many([FRAME] * 4, timestamps=[0.0, 1.0, 2.0, 3.0])
    last = {name: m.history[-1] for name, m in (("agree", agree), ("spread", spread), ("single", single))}
    assert last["spread"].raw == pytest.approx(0.5) and last["spread"].spread == pytest.approx(0.2)
    assert last["agree"].spread == 0.0
    width = {name: step.high - step.low for name, step in last.items()}
    # agreeing draws (floored at min_noise 0.02) < one answer (noise 0.10) < draws spread by 0.20
    assert width["agree"] < width["single"] < width["spread"]
    assert spread.scorer.backend.batches == [12]  # 4 frames x 3 draws, one batch


def test_a_frame_is_na_when_most_draws_are():
    monitor = monitor_for(["na", "na", 40, "na", 40, 60], temperature=0.7, samples=3)
    first, second = monitor.update_many([FRAME, FRAME], [0.0, 1.0])
    assert first.status == "na" and first.raw is None and first.smoothed is None
    assert second.status == "value" and second.raw == pytest.approx(0.5) and second.spread is not None


def test_combine_draws_prefers_na_over_parse_failure_on_ties():
    na = Estimate(None, Status.NA, None, "n/a", 0.1)
    bad = Estimate(None, Status.PARSE_FAILURE, None, "??", 0.2)
    reading = combine_draws([na, bad])
    assert reading.status is Status.NA and reading.latency_s == pytest.approx(0.3)
    assert combine_draws([bad, bad, na]).status is Status.PARSE_FAILURE


def test_samples_need_a_sampling_backend():
    with pytest.raises(MonitorError, match=r"samples=3 .* temperature is 0.0 .*temperature=0.7"):
        monitor_for([], samples=3)


def test_steps_and_events_serialise_as_percent():
    monitor = run([10, 25], **EXACT)
    step = monitor.history[1]
    data = json.loads(json.dumps(step.to_dict()))
    assert data["raw"] == 25.0 and data["smoothed"] == pytest.approx(25.0, abs=0.01) and data["t"] == 1.0
    assert data["events"] == [{"kind": "progress", "index": 1, "t": 1.0, "progress": pytest.approx(25.0, abs=0.01),
                               "detail": "reached 20%"}]  # fmt: skip
    assert isinstance(step, MonitorStep) and isinstance(step.events[0], Event)
    summary = json.loads(json.dumps(monitor.summary()))
    assert summary["frames"] == 2 and summary["answered"] == 2 and summary["events"]["progress"] == 2
    assert summary["duration_s"] == 1.0


def test_reset_forgets_everything():
    monitor = run([50, 60, 70, 80], **EXACT)
    monitor.reset()
    assert monitor.history == [] and monitor.events == [] and monitor.summary()["frames"] == 0
    monitor.scorer.backend.script = [40]
    step = monitor.update(FRAME, 0.0)
    assert step.index == 0 and step.smoothed == pytest.approx(0.4)
    assert [e.detail for e in step.events] == ["reached 40% (passed 10%, 20%, 30%, 40%)"]


def test_update_defaults_to_the_monotonic_clock():
    monitor = monitor_for([10, 20])
    first, second = monitor.update(FRAME), monitor.update(FRAME)
    assert 0 <= second.t - first.t < 5 and second.index == 1


def test_with_a_real_backend_pixel_nn_reaches_done():
    levels = [0, 85, 170, 255]
    demo = [np.full((16, 16, 3), v, np.uint8) for v in levels]
    with ProgressScorer("brighten", demo, backend="pixel-nn") as scorer:
        monitor = ProgressMonitor(scorer, milestones="steps", stall_seconds=None)
        frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 40, 90, 120, 170, 200, 250, 255, 255, 255, 255)]
        monitor.update_many(frames, timestamps=[float(i) for i in range(len(frames))])
    assert [e.kind for e in monitor.events].count("done") == 1
    assert [e.kind for e in monitor.events if e.kind == "progress"] == ["progress", "progress"]
    assert monitor.history[-1].smoothed > 0.95


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"samples": 0}, r"samples: expected a whole number >= 1, got 0"),
        ({"samples": True}, r"samples: expected a whole number"),
        ({"stall_seconds": 0}, r"stall_seconds: expected a number of seconds > 0 or None"),
        ({"stall_seconds": math.inf}, r"stall_seconds"),
        ({"stall_frames": 0}, r"stall_frames: expected a whole number >= 1 or None, got 0"),
        ({"min_gain": 0}, r"min_gain: expected a number in \(0, 1\)"),
        ({"min_gain": 1.0}, r"min_gain"),
        ({"regression_drop": 1.5}, r"regression_drop: expected a number in \(0, 1\]"),
        ({"done_threshold": 0}, r"done_threshold"),
        ({"done_threshold": "high"}, r"done_threshold: .* got 'high'"),
        ({"done_frames": 0}, r"done_frames: expected a whole number >= 1"),
        ({"off_task_frames": 2.5}, r"off_task_frames"),
        ({"process_noise": -1.0}, r"process_noise: expected a number > 0, got -1.0"),
        ({"measurement_noise": 0}, r"measurement_noise"),
        ({"band_sigmas": float("nan")}, r"band_sigmas"),
        ({"milestones": "weekly"}, r"milestones: 'weekly' is not one of tenths, steps"),
        ({"milestones": [0.5, 0]}, r"milestones\[1\]: expected a fraction in \(0, 1\]"),
        ({"milestones": 5}, r"milestones: expected 'tenths', 'steps' or a list of fractions, got 5"),
    ],
)
def test_bad_arguments_say_what_and_where(kwargs, pattern):
    with pytest.raises(MonitorError, match=pattern):
        monitor_for([], **kwargs)


def test_bad_scorer_and_bad_frames():
    with pytest.raises(MonitorError, match=r"scorer: expected a ProgressScorer .* got object"):
        ProgressMonitor(object())
    monitor = monitor_for([10, 20, 30])
    monitor.update(FRAME, 5.0)
    with pytest.raises(MonitorError, match=r"timestamps\[1\] \(frame 2\): 4.0 is earlier than the frame before it"):
        monitor.update_many([FRAME, FRAME], [6.0, 4.0])
    with pytest.raises(MonitorError, match=r"timestamps: 1 given for 2 frames"):
        monitor.update_many([FRAME, FRAME], [6.0])
    with pytest.raises(MonitorError, match=r"timestamps\[0\] \(frame 1\): expected a finite number"):
        monitor.update(FRAME, float("nan"))
    with pytest.raises(MonitorError, match=r"frame 2: expected an image array of H x W x C"):
        monitor.update_many([FRAME, np.zeros((5, 6, 7))], [6.0, 7.0])
    with pytest.raises(MonitorError, match=r"update_many takes a list of frames; use update\(\)"):
        monitor.update_many(FRAME)
    # nothing was scored or recorded by the failed calls
    assert len(monitor.history) == 1 and monitor.scorer.backend.script == [20, 30]
    assert monitor.update_many([]) == []


def test_voc_reads_how_well_the_answers_follow_time():
    assert run([10, 20, "na", 40, 60], **EXACT).summary()["voc"] == 1.0
    assert run([60, 40, 20, 10], **EXACT).summary()["voc"] == -1.0
    assert run([10, 30, 20, 40], **EXACT).summary()["voc"] == 0.8  # one swap in four
    assert run([50, 50, "na"], **EXACT).summary()["voc"] is None  # constant answers order nothing
