"""Demo cuts, swapped-demo negatives and self demos: exact labels, valid anchors, deterministic, usable for training."""

import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.bench.format import load_bench
from progresslm.bench.sampling import anchors
from progresslm.parsing import parse_two_stage
from progresslm.train.augment import augment, cut_demo, demo_cuts, self_demos, swap_negatives
from progresslm.train.traces import template_trace
from progresslm.train.training_data import label_problem, sft_records
from progresslm.types import Demo, Modality, Sample, View


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    samples = load_bench([fixture(name) for name in BENCH_FILES]).samples
    write_images(samples, root)
    return samples, root


def visual(progress, steps=4):
    demo = Demo(Modality.VISUAL, tuple(f"k{i}.jpg" for i in range(steps + 1)), total_steps=steps)
    closest, _, delta = anchors(progress, steps)
    return Sample("u", "traj", "stack the cups", demo, "o.jpg", progress=progress, closest_idx=closest, delta=delta)


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.25, 0.3, 0.5])
def test_a_cut_demo_rescales_progress_and_moves_the_anchor(progress):
    sample = visual(progress)
    cut = cut_demo(sample, 2)  # steps 1-2 of 4: the shorter task ends at the old 50 %
    assert cut.demo.items == ("k0.jpg", "k1.jpg", "k2.jpg") and cut.demo.total_steps == 2
    assert cut.progress == pytest.approx(progress * 2)
    # the labels the simulator would give a 2-step task at that progress
    closest, _, delta = anchors(cut.progress, 2)
    assert (cut.closest_idx, cut.delta) == (closest, pytest.approx(delta))
    assert label_problem(cut, "two-stage") is None
    assert cut.uid == "u#cut2" and cut.extra["cut_from"] == "u"


def test_a_text_demo_cut_keeps_the_first_steps():
    demo = Demo(Modality.TEXT, ("reach", "grasp", "lift", "place"), total_steps=4)
    sample = Sample("u", "t", "g", demo, "o.jpg", progress=0.2, closest_idx=1)
    cut = cut_demo(sample, 3)
    assert cut.demo.items == ("reach", "grasp", "lift") and cut.progress == pytest.approx(0.2 * 4 / 3, abs=1e-6)
    assert cut.closest_idx == anchors(cut.progress, 3)[1] == 1


def test_a_cut_that_would_leave_the_observation_outside_is_refused():
    with pytest.raises(ValueError, match="beyond step 1 of 4"):
        cut_demo(visual(0.5), 1)
    with pytest.raises(ValueError, match="need 1 <= steps < 4"):
        cut_demo(visual(0.5), 4)
    unanswerable = Sample("n", "t", "g", visual(0.1).demo, "o.jpg", progress=None, closest_idx=None)
    with pytest.raises(ValueError, match="only an answerable"):
        cut_demo(unanswerable, 2)


def test_demo_cuts_follow_the_rate_and_the_seed(bench):
    samples, _ = bench
    answerable = [s for s in samples if s.answerable and s.demo.total_steps >= 2]
    many = demo_cuts(samples, rate=1.0, seed=0)
    assert 0 < len(many) <= len(answerable)
    for cut in many:  # every cut sample is a valid training sample whose score did not shrink
        source = next(s for s in samples if s.uid == cut.extra["cut_from"])
        assert label_problem(cut, "two-stage") is None
        assert cut.progress >= source.progress and cut.demo.total_steps < source.demo.total_steps
    assert demo_cuts(samples, rate=1.0, seed=0) == many
    assert demo_cuts(samples[::-1], rate=1.0, seed=0) == many[::-1]  # not order-dependent
    assert demo_cuts(samples, rate=0.0) == []
    assert len(demo_cuts(samples, rate=0.3, seed=1)) < len(many)


def test_swap_negatives_are_na_with_resolved_demo_images(bench):
    samples, root = bench
    negatives = swap_negatives(samples, rate=1.0, image_root=root, seed=0)
    assert negatives and all(not s.answerable and s.closest_idx is None for s in negatives)
    for negative in negatives:
        source = next(s for s in samples if s.uid + "#swap" == negative.uid)
        assert negative.goal != source.goal and negative.observation == source.observation
    rows = sft_records(negatives, root, trace_style="short")  # images resolve: no DatasetError
    assert {row["messages"][-1]["content"][0]["text"].count("n/a") for row in rows} == {2}
    assert swap_negatives(samples, rate=0.0, image_root=root) == []


def test_augment_keeps_the_samples_and_adds_both_kinds(bench):
    samples, root = bench
    out = augment(samples, root, cuts=1.0, swaps=1.0)
    assert out[: len(samples)] == samples
    added = out[len(samples) :]
    assert any("#cut" in s.uid for s in added) and any(s.uid.endswith("#swap") for s in added)
    with pytest.raises(ValueError, match="rates must be >= 0"):
        augment(samples, root, cuts=-1)


@pytest.mark.parametrize("progress", [0.0, 0.12, 0.25, 0.6, 1.0])
def test_short_traces_parse_back_to_the_labels(progress):
    sample = visual(progress)
    reply = template_trace(sample, style="short")
    parsed = parse_two_stage(reply)
    assert parsed.ref == sample.closest_idx
    assert parsed.score == pytest.approx(progress, abs=1e-3)
    assert len(reply) < 120
    na = template_trace(Sample("n", "t", "g", sample.demo, "o", progress=None, closest_idx=None), style="short")
    assert parse_two_stage(na).ref is None and "n/a" in na
    with pytest.raises(ValueError, match="unknown trace style"):
        template_trace(sample, style="long")


def episode(traj="sim/t/sft_000", camera="corner2", steps=3, per_interval=2, view=View.SAME):
    """Rows of one simulated trajectory: key frames at k/T and `per_interval` frames between them."""
    demo = Demo(Modality.VISUAL, tuple(f"demo/{camera}_k{k}.jpg" for k in range(steps + 1)), total_steps=steps)
    points = sorted({(k + i / (per_interval + 1)) / steps for k in range(steps) for i in range(per_interval + 1)} | {1.0})
    rows = []
    for n, p in enumerate(points):
        closest, _, delta = anchors(p, steps)
        rows.append(Sample(
            f"{view.value}:{traj}:{n}", traj, "open the drawer", demo, f"{camera}_{n:04d}.jpg", progress=round(p, 4),
            closest_idx=closest, delta=delta, view=view, demo_camera=camera, observation_camera=camera,
        ))  # fmt: skip
    return rows


def test_a_self_demo_is_the_observation_episodes_own_key_frames():
    rows = episode()
    selfs = self_demos(rows, rate=1.0)
    assert len(selfs) == len(rows)
    key_names = [r.observation for r in rows if r.closest_idx is not None and abs(r.delta) < 1e-9]
    for copy, source in zip(selfs, rows):
        assert copy.uid == source.uid + "#self" and copy.extra["self_demo_of"] == source.uid
        assert copy.demo.items == tuple(key_names) and copy.demo.total_steps == 3
        # the labels do not change: the key frames sit at the same progress as the demo's
        assert (copy.progress, copy.closest_idx, copy.delta) == (source.progress, source.closest_idx, source.delta)
        assert label_problem(copy, "two-stage") is None
    # an observation at a key frame is one of the demo's images; one in between is not
    assert sum(copy.observation in copy.demo.items for copy in selfs) == 4


def test_self_demos_need_every_key_frame_and_a_same_view_visual_sample():
    rows = episode()
    missing = [r for r in rows if r.progress != 1.0]  # the last key frame was never rendered
    assert self_demos(missing, rate=1.0) == []
    cross = episode(view=View.CROSS)
    assert self_demos(cross, rate=1.0) == []  # same-view rows make them (a cross-view copy would repeat it)
    text = [Sample("x", "t", "g", Demo(Modality.TEXT, ("a", "b"), 2), "o.jpg", progress=0.5, closest_idx=1)]
    assert self_demos(text, rate=1.0) == []
    two = episode() + episode(traj="sim/t/sft_001", camera="corner3")
    picked = self_demos(two, rate=0.5, seed=3)
    assert 0 < len(picked) < len(two) and picked == self_demos(two[::-1], rate=0.5, seed=3)[::-1]
    assert all(s.demo.items[0].startswith(s.observation_camera) for s in picked)  # each from its own camera
    assert self_demos(two, rate=0.0) == []


def test_augment_cuts_self_demos_too_and_checks_the_rate():
    rows = episode()
    out = augment(rows, None, cuts=1.0, selfs=1.0)
    assert any("#self#cut" in s.uid for s in out)
    with pytest.raises(ValueError, match="self_demos=-1"):
        augment(rows, None, selfs=-1)
