"""Template traces read back as their labels; teacher traces are kept only when they agree with them."""

import json
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.backends.base import Backend, BackendOptions, Reply, Request
from progresslm.backends.registry import create_backend
from progresslm.bench.format import load_bench
from progresslm.parsing import parse_direct, parse_two_stage
from progresslm.prompts import build_prompt
from progresslm.train.rewards import is_well_formed
from progresslm.train.traces import (
    TraceResult,
    check_trace,
    drop_rate,
    kept_traces,
    teacher_prompt,
    teacher_traces,
    template_trace,
)
from progresslm.types import Demo, Modality, Sample, Status


@pytest.fixture(scope="module")
def samples():
    return load_bench([fixture(name) for name in [*BENCH_FILES, "human_text_demo"]]).samples


def visual_sample(progress, anchor, uid="v"):
    demo = Demo(Modality.VISUAL, ("k0.jpg", "k1.jpg", "k2.jpg", "k3.jpg", "k4.jpg"), total_steps=4)
    return Sample(uid, "traj", "put the cup on the plate", demo, "obs.jpg", progress=progress, closest_idx=anchor)


def text_sample(progress, anchor, uid="t"):
    demo = Demo(Modality.TEXT, ("pick up the cup", "move it over the plate", "put it down"), total_steps=3)
    return Sample(uid, "traj", "put the cup on the plate", demo, "obs.jpg", progress=progress, closest_idx=anchor)


def test_template_traces_read_back_as_labels(samples):
    for sample in samples:
        trace = template_trace(sample)
        prediction = parse_two_stage(trace)
        assert is_well_formed(trace), trace
        assert check_trace(sample, trace, tolerance=0.0006) == (True, "ok"), trace
        if sample.answerable:
            assert prediction.ref == sample.closest_idx
            assert prediction.score == pytest.approx(sample.progress, abs=0.0005)  # one decimal of a percent
        else:
            assert (prediction.ref_status, prediction.status) == (Status.NA, Status.NA)
        direct = parse_direct(template_trace(sample, "direct"))
        if sample.answerable:
            assert direct.score == pytest.approx(sample.progress, abs=0.0005)
        else:
            assert direct.status is Status.NA


def test_phrasings_vary_with_rng():
    sample = visual_sample(0.6, 3)
    traces = [template_trace(sample, rng=random.Random(seed)) for seed in range(60)]
    ref_thinks = {t.split("</ref_think>")[0] for t in traces}
    score_thinks = {t.split("<score_think>")[1].split("</score_think>")[0] for t in traces}
    assert len(ref_thinks) >= 4 and len(score_thinks) >= 4
    na = {template_trace(visual_sample(None, None), rng=random.Random(seed)) for seed in range(60)}
    assert len(na) >= 8
    # by default the phrasing is a function of the uid alone
    assert template_trace(sample) == template_trace(sample)


def test_trace_names_anchor_and_offset():
    after = template_trace(visual_sample(0.6, 3), rng=random.Random(0))  # keyframe 3 stands at 50%
    assert "keyframe 3 (50%)" in after and re.search(r"\b10 (percentage )?points", after)
    assert "<score>60%</score>" in after
    before = template_trace(visual_sample(0.45, 3), rng=random.Random(1))
    assert re.search(r"\b5 (percentage )?points", before)
    assert "20% of the way back to keyframe 2 (25%)" in before  # 5 of the 25 points from 50% to 25%
    at = template_trace(visual_sample(0.5, 3), rng=random.Random(2))
    assert "<score>50%</score>" in at and "percentage point" not in at
    text = template_trace(text_sample(0.6, 2), rng=random.Random(3))  # step 2 ends at 67%
    assert "move it over the plate" in text and "67%" in text
    assert "<score>1.4%</score>" in template_trace(visual_sample(0.0141, 1))


def test_traces_do_not_reveal_the_labels(samples):
    for sample in samples:
        for seed in range(8):
            trace = template_trace(sample, rng=random.Random(seed)).lower()
            assert not any(word in trace for word in ("ground truth", "label", "correct answer", "given"))


def test_bad_inputs():
    with pytest.raises(ValueError, match="u1.*closest_idx"):
        template_trace(visual_sample(0.5, None, uid="u1"))
    with pytest.raises(ValueError, match="outside|not a demo item"):
        template_trace(visual_sample(0.5, 9))
    with pytest.raises(ValueError, match="valid modes"):
        template_trace(visual_sample(0.5, 3), mode="chain")


def reply(ref, score, think="the gripper holds the cup"):
    return f"<ref_think>{think}</ref_think><ref>{ref}</ref><score_think>{think}</score_think><score>{score}</score>"


@pytest.mark.parametrize(
    "sample, text, kept, reason",
    [
        (visual_sample(0.6, 3), reply(3, "60%"), True, "ok"),
        (visual_sample(0.6, 3), reply(3, "64%"), True, "ok"),
        (visual_sample(0.6, 3), reply(3, "66%"), False, "score 66% is 6.0 points from 60%"),
        (visual_sample(0.6, 3), reply(4, "60%"), False, "anchor 4 != 3"),
        (visual_sample(0.6, 3), reply("n/a", "n/a"), False, "n/a for an answerable sample"),
        (visual_sample(None, None), reply("n/a", "n/a"), True, "ok"),
        (visual_sample(None, None), reply("n/a", "40%"), False, "a value for an unanswerable sample"),
        (visual_sample(0.6, 3), "Sure. " + reply(3, "60%"), False, "not exactly the four blocks"),
        (visual_sample(0.6, 3), reply(3, "60%", "the ground truth says 60%"), False, "mentions that the answer"),
    ],
)
def test_check_trace(sample, text, kept, reason):
    assert check_trace(sample, text)[0] is kept
    assert check_trace(sample, text)[1].startswith(reason)


class FakeTeacher(Backend):
    """Replies from a uid -> text table, last request first; records what it was sent."""

    image_format: ClassVar[str] = "pil"
    chunk_size: ClassVar[int] = 2

    def __init__(self, replies, mode="two-stage"):
        super().__init__(BackendOptions(model="fake-teacher"), mode)
        self.replies = replies
        self.requests: list[Request] = []

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        self.requests.extend(requests)
        for index in reversed(range(len(requests))):
            text = self.replies[requests[index].uid]
            yield index, Reply(text="", error="HTTP 400") if text is None else Reply(text=text)


def test_teacher_traces_with_fake_backend(samples, tmp_path):
    chosen = [s for s in samples if s.split == "visual_same_view"][:2] + [
        next(s for s in samples if s.split == "visual_unanswerable"),
        next(s for s in samples if s.split == "text"),
        next(s for s in samples if s.split == "text_unanswerable"),
    ]
    write_images(chosen, tmp_path)
    good, wrong, na, text_ok, errored = chosen
    replies = {
        good.uid: template_trace(good),
        wrong.uid: reply(wrong.closest_idx + 1, f"{wrong.progress * 100:g}%"),
        na.uid: template_trace(na),
        text_ok.uid: reply(text_ok.closest_idx, f"{text_ok.progress * 100 + 3:g}%"),
        errored.uid: None,
    }
    teacher = FakeTeacher(replies)
    results = teacher_traces(chosen, teacher, tmp_path)
    assert [r.uid for r in results] == [s.uid for s in chosen]
    assert [r.kept for r in results] == [True, False, True, True, False]
    assert results[1].reason.startswith("anchor") and results[4].reason == "backend error: HTTP 400"
    assert drop_rate(results) == pytest.approx(0.4)
    assert kept_traces(results) == {s.uid: replies[s.uid] for s in (good, na, text_ok)}

    sent = {r.uid: r for r in teacher.requests}
    for sample in chosen:
        request, prompt = sent[sample.uid], build_prompt(sample, "two-stage", tmp_path)
        assert request.prompt.images == prompt.images
        assert len(request.images) == len(prompt.images) and all(hasattr(i, "size") for i in request.images)
        messages = request.prompt.messages
        assert messages[0] == prompt.messages[0]
        assert messages[1]["content"][:-1] == prompt.messages[1]["content"]
        hint = messages[1]["content"][-1]["text"]
        assert "as if you did not know" in hint
        if sample.answerable:
            assert f" {sample.closest_idx}," in hint and f"{sample.progress * 100:g}%" in hint
        else:
            assert "n/a" in hint


def test_teacher_prompt_leaves_evaluation_prompt_alone(samples):
    before = build_prompt(samples[0], "two-stage", "/root")
    teacher = teacher_prompt(samples[0], "/root")
    assert build_prompt(samples[0], "two-stage", "/root") == before
    assert teacher.hash != before.hash and teacher.images == before.images


def test_teacher_traces_with_replay_backend(samples, tmp_path):
    chosen = samples[:4]
    path = tmp_path / "replies.jsonl"
    lines = [{"uid": s.uid, "reply": template_trace(s)} for s in chosen[:3]] + [{"uid": chosen[3].uid, "reply": "50%"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    backend = create_backend("replay", BackendOptions(replies=str(path)), "two-stage")
    results = teacher_traces(chosen, backend, image_root=None)
    assert [r.kept for r in results] == [True, True, True, False]
    assert drop_rate(results) == 0.25 and drop_rate([]) == 0.0


def test_teacher_needs_two_stage_backend_and_images(samples, tmp_path):
    with pytest.raises(ValueError, match="two-stage"):
        teacher_traces(samples[:1], FakeTeacher({}, mode="direct"), tmp_path)
    results = teacher_traces(samples[:1], FakeTeacher({}), tmp_path / "nowhere")
    assert results == [TraceResult(samples[0].uid, "", False, results[0].reason)]
    assert results[0].reason.startswith("image:")


def test_trace_rows_carry_the_prompt_hash_and_labels(samples):
    from progresslm.train.traces import prompt_hash, trace_row

    answerable = next(s for s in samples if s.answerable)
    result = TraceResult(answerable.uid, template_trace(answerable), True, "ok")
    row = trace_row(result, answerable, tolerance=0.03)
    assert row["uid"] == answerable.uid and row["kept"] and row["reply"] == result.reply
    assert row["prompt_hash"] == build_prompt(answerable, "two-stage", "/any/root").hash == prompt_hash(answerable)
    assert row["prompt_hash"] == build_prompt(answerable, "two-stage", None).hash  # no image-root dependence
    assert (row["progress"], row["closest_idx"], row["tolerance"]) == (answerable.progress, answerable.closest_idx, 0.03)
    with pytest.raises(ValueError, match="paired with"):
        trace_row(result, samples[-1] if samples[-1].uid != answerable.uid else samples[0])


def test_sft_drops_traces_that_no_longer_match_their_samples(samples, tmp_path):
    """Traces are joined by uid, then re-checked: prompt hash, labels, and the reply against the labels."""
    pytest.importorskip("datasets")
    import dataclasses

    from progresslm.train.recipes import load_recipe
    from progresslm.train.sft import sft_dataset
    from progresslm.train.traces import trace_row

    bench = [fixture(name) for name in BENCH_FILES]
    fixture_samples = load_bench(bench).samples
    write_images(fixture_samples, tmp_path / "images")
    answerable = [s for s in fixture_samples if s.answerable]
    good, moved, relabelled, wrong, legacy, other = answerable[:6]

    def row(sample, reply=None):
        reply = template_trace(sample) if reply is None else reply
        return trace_row(TraceResult(sample.uid, reply, True, "ok"), sample)

    rows = [
        row(good),
        {**row(moved), "prompt_hash": row(other)["prompt_hash"]},  # written for another prompt under this uid
        row(dataclasses.replace(relabelled, progress=relabelled.progress / 2 + 0.01)),  # labels changed since
        {"uid": wrong.uid, "reply": reply(wrong.closest_idx % len(wrong.demo.items) + 1, "50%")},  # wrong anchor
        {"uid": legacy.uid, "reply": template_trace(legacy)},  # an old row: uid and reply only, still right
        {**row(other), "kept": False},
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe(
        Path(__file__).parents[2] / "configs" / "sft_tiny_cpu.yaml",
        [f"data.files={[str(p) for p in bench]}", f"data.image_root={tmp_path / 'images'}", f"data.traces=[{path}]",
         f"output_dir={tmp_path / 'out'}"],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="dropped 3 reasoning traces that no longer match") as caught:
        dataset = sft_dataset(recipe)
    message = str(caught[0].message)
    assert f"{moved.uid}: prompt hash differs" in message
    assert f"{relabelled.uid}: progress was" in message
    assert f"{wrong.uid}: reply disagrees with the labels: anchor" in message
    assert dataset["uid"] == [good.uid, legacy.uid]
    assert dataset[0]["completion"][0]["content"][0]["text"] == template_trace(good)
