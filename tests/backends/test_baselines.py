"""Constant and random baselines: well-formed replies, nearest anchors, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from progresslm.backends.base import BackendOptions, Request
from progresslm.backends.baselines import ConstantBackend, RandomBackend
from progresslm.bench.format import read_official
from progresslm.parsing import parse_reply
from progresslm.prompts import build_prompt
from progresslm.types import Status

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official_sample"


def requests(mode: str, file: str = "visual_same_view.jsonl", draws: int = 1) -> list[Request]:
    samples = read_official(FIXTURES / file).samples
    return [Request(s.uid, d, build_prompt(s, mode), s) for s in samples for d in range(draws)]


def answers(backend, reqs) -> list:
    replies = dict(backend.generate(reqs))
    return [parse_reply(replies[i].text, backend.mode) for i in range(len(reqs))]


def test_constant_direct_reply():
    backend = ConstantBackend(BackendOptions(value=37.0), "direct")
    [reply] = [r for _, r in backend.generate(requests("direct")[:1])]
    assert reply.text == "37%"
    assert backend.model_name == "constant-37%"
    assert ConstantBackend(BackendOptions(value=50.0), "direct").model_name == "constant-50%"


@pytest.mark.parametrize(
    ("file", "value", "ref"),
    [
        ("visual_same_view.jsonl", 37.0, 2),  # keyframes at 0, 25, 50, 75, 100%: 37 is nearest 25 (step 2)
        ("visual_same_view.jsonl", 80.0, 4),  # nearest 75 (step 4)
        ("text-normal.jsonl", 37.0, 2),  # text steps end at 20, 40, 60, 80, 100%: nearest 40 (step 2)
        ("text-normal.jsonl", 0.0, 1),
    ],
)
def test_constant_two_stage_reply_parses_to_value_and_nearest_anchor(file, value, ref):
    reqs = requests("two-stage", file)
    assert reqs[0].sample.demo.progress_points() in ([0, 0.25, 0.5, 0.75, 1.0], [0.2, 0.4, 0.6, 0.8, 1.0])
    prediction = answers(ConstantBackend(BackendOptions(value=value), "two-stage"), reqs[:1])[0]
    assert prediction.status is Status.VALUE and prediction.score == pytest.approx(value / 100)
    assert prediction.ref_status is Status.VALUE and prediction.ref == ref


def test_floors_never_look_at_labels():
    reqs = requests("two-stage")
    for request in reqs:
        request.sample.progress, request.sample.closest_idx = None, None
    assert all(p.has_value for p in answers(RandomBackend(BackendOptions(seed=1), "two-stage"), reqs))


def test_random_is_deterministic_per_seed_uid_and_draw_and_in_range():
    reqs = requests("direct", draws=3)
    first = [p.score for p in answers(RandomBackend(BackendOptions(seed=3), "direct"), reqs)]
    again = [p.score for p in answers(RandomBackend(BackendOptions(seed=3), "direct"), list(reversed(reqs)))]
    assert first == list(reversed(again))  # order does not matter
    backend = RandomBackend(BackendOptions(seed=3), "direct")
    chunked = [p.score for chunk in (reqs[:4], reqs[4:]) for p in answers(backend, chunk)]
    assert chunked == first
    assert all(0.0 <= score <= 1.0 for score in first)
    assert len(set(first)) > len(first) // 2  # different uids and draws get different answers
    other_seed = [p.score for p in answers(RandomBackend(BackendOptions(seed=4), "direct"), reqs)]
    assert other_seed != first
    assert RandomBackend(BackendOptions(), "direct").model_name == "random"


def test_random_two_stage_anchor_is_nearest_step():
    reqs = requests("two-stage")
    for request, prediction in zip(reqs, answers(RandomBackend(BackendOptions(seed=0), "two-stage"), reqs)):
        points = request.sample.demo.progress_points()
        distances = [abs(p - prediction.score) for p in points]
        assert distances[prediction.ref - 1] == min(distances)


def test_image_format_can_be_overridden_per_instance():
    backend = ConstantBackend(BackendOptions(), "direct")
    backend.image_format = "data_url"
    assert backend.image_format == "data_url" and ConstantBackend.image_format == "none"
