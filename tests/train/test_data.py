"""SFT and GRPO rows: the evaluation prompt, images in image-part order, right labels, bad rows named."""

import dataclasses
import random

import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.bench.format import load_bench
from progresslm.prompts import build_prompt
from progresslm.train.rewards import make_reward_funcs
from progresslm.train.traces import template_trace
from progresslm.train.training_data import DatasetError, grpo_records, sft_records, to_dataset


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    samples = load_bench([fixture(name) for name in [*BENCH_FILES, "human_text_demo"]]).samples
    write_images(samples, root)
    return samples, root


def image_parts(messages):
    return sum(part["type"] == "image" for message in messages for part in message["content"])


@pytest.mark.parametrize("mode", ["two-stage", "direct"])
def test_sft_rows_use_the_evaluation_prompt(bench, mode):
    samples, root = bench
    rows = sft_records(samples, root, mode=mode)
    assert [row["uid"] for row in rows] == [s.uid for s in samples]
    for sample, row in zip(samples, rows):
        prompt = build_prompt(sample, mode, root)
        assert row["messages"][:-1] == prompt.messages
        reply = template_trace(sample, mode, random.Random(f"0:{sample.uid}"))
        assert row["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": reply}]}
        assert row["images"] == [str(path) for path in prompt.images]
        assert image_parts(row["messages"]) == len(row["images"]) == len(sample.image_names())


def test_sft_rows_do_not_depend_on_order_and_take_traces(bench):
    samples, root = bench
    forward = sft_records(samples, root, seed=3)
    assert sft_records(samples[::-1], root, seed=3) == forward[::-1]
    assert sft_records(samples, root, seed=4) != forward  # another seed, other phrasings
    traces = {s.uid: f"<ref>{i}</ref>" for i, s in enumerate(samples[:2])}
    rows = sft_records(samples[:2], root, traces=traces)
    assert [row["messages"][-1]["content"][0]["text"] for row in rows] == ["<ref>0</ref>", "<ref>1</ref>"]
    with pytest.raises(DatasetError, match=f"{samples[2].uid}: no trace"):
        sft_records(samples[:3], root, traces=traces)


def test_grpo_rows_carry_the_reward_columns(bench):
    samples, root = bench
    rows = grpo_records(samples, root)
    assert {row["split"] for row in rows} == {
        "visual_same_view", "visual_cross_view", "text", "visual_unanswerable", "text_unanswerable"
    }
    for sample, row in zip(samples, rows, strict=True):
        prompt = build_prompt(sample, "two-stage", root)
        assert row["prompt"] == prompt.messages and row["uid"] == sample.uid
        assert row["images"] == [str(path) for path in prompt.images]
        assert image_parts(row["prompt"]) == len(row["images"])
        assert row["n_items"] == len(sample.demo.items) and row["split"] == sample.split
        if sample.answerable:
            assert (row["gt_ref"], row["gt_progress"]) == (sample.closest_idx, sample.progress)
            assert isinstance(row["gt_ref"], int) and 0 <= row["gt_progress"] <= 1
        else:
            assert (row["gt_ref"], row["gt_progress"]) == (None, None)


def test_dataset_round_trip_and_lazy_images(bench):
    samples, root = bench
    rows = grpo_records(samples, root)
    dataset = to_dataset(rows)
    assert len(dataset) == len(rows)
    for index in (0, len(rows) - 1, next(i for i, r in enumerate(rows) if r["gt_ref"] is None)):
        item = dataset[index]
        assert item["prompt"] == rows[index]["prompt"]  # exactly: no None keys added by Arrow
        assert (item["gt_ref"], item["gt_progress"], item["n_items"]) == (
            rows[index]["gt_ref"], rows[index]["gt_progress"], rows[index]["n_items"]
        )
        assert len(item["images"]) == len(rows[index]["images"])
        assert all(image.mode == "RGB" and image.size == (56, 56) for image in item["images"])
    assert to_dataset(rows, load_images=False)[0]["images"] == rows[0]["images"]
    sft = to_dataset(sft_records(samples[:3], root))
    assert sft[2]["messages"] == sft_records(samples[:3], root)[2]["messages"]
    assert sft.column_names == ["messages", "images", "uid"]


def test_rewards_read_the_dataset_columns(bench):
    samples, root = bench
    dataset = to_dataset(grpo_records(samples, root), load_images=False)
    columns = {name: dataset[name] for name in ("gt_ref", "gt_progress", "n_items", "uid", "split")}
    perfect = [template_trace(sample) for sample in samples]
    functions, _ = make_reward_funcs()
    for function in functions:
        assert function(perfect, **columns) == pytest.approx([1.0] * len(samples), abs=0.001)


def test_bad_rows_reported_by_uid(bench, tmp_path):
    samples, _ = bench
    root = tmp_path / "images"
    write_images(samples, root)
    gone = samples[0]
    (root / gone.trajectory_id / gone.observation).unlink()
    unlabelled = dataclasses.replace(samples[1], closest_idx=None)
    batch = [gone, unlabelled, *samples[2:]]
    for build in (sft_records, grpo_records):
        with pytest.raises(DatasetError) as error:
            build(batch, root)
        message = str(error.value)
        assert message.startswith(f"2 of {len(batch)} rows cannot train")
        assert f"{gone.uid}: missing image" in message and gone.observation in message
        assert f"{unlabelled.uid}: answerable but closest_idx is n/a" in message
        assert "skip_bad=True" in message
        with pytest.warns(UserWarning, match=f"dropped 2 of {len(batch)} rows"):
            kept = build(batch, root, skip_bad=True)
        assert [row["uid"] for row in kept] == [s.uid for s in samples[2:]]
    # direct-mode SFT needs no anchor
    assert len(sft_records([unlabelled], root, mode="direct")) == 1


def test_many_bad_rows_are_counted(bench, tmp_path):
    samples, _ = bench
    with pytest.raises(DatasetError) as error:
        grpo_records(samples, tmp_path / "empty")
    message = str(error.value)
    assert message.startswith(f"{len(samples)} of {len(samples)} rows")
    assert sum(sample.uid + ":" in message for sample in samples) == 10
    assert f"and {len(samples) - 10} more" in message


def test_other_bad_labels(bench):
    samples, root = bench
    answerable = next(s for s in samples if s.answerable)
    unanswerable = next(s for s in samples if not s.answerable)
    cases = [
        (dataclasses.replace(answerable, uid="far", closest_idx=99), "closest_idx 99 outside"),
        (dataclasses.replace(answerable, uid="over", progress=1.5), "progress 150% outside"),
        (dataclasses.replace(unanswerable, uid="mixed", closest_idx=2), "progress is n/a but closest_idx is 2"),
    ]
    for sample, reason in cases:
        with pytest.raises(DatasetError, match=f"{sample.uid}: {reason}"):
            grpo_records([sample], root)


def test_bad_arguments(bench):
    samples, root = bench
    with pytest.raises(ValueError, match="valid modes"):
        grpo_records(samples, root, mode="cot")
    with pytest.raises(DatasetError, match="no rows"):
        to_dataset([])
    with pytest.raises(DatasetError, match="extra"):
        to_dataset([{"uid": "a", "extra": 1}])


def test_rows_without_label_fields_are_bad_rows_not_na_targets(bench, tmp_path):
    """A record with no progress_score / closest_idx at all is reported by uid, never trained as n/a."""
    import json

    samples, root = bench
    source = fixture("visual-unanswerable")
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    stripped = dict(records[0])
    for key in ("progress_score", "closest_idx"):
        stripped.pop(key, None)
    path = tmp_path / "visual-unanswerable.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [stripped, *records[1:]]))
    loaded = load_bench([path]).samples
    unlabelled = loaded[0]
    assert not unlabelled.labelled and unlabelled.progress is None and unlabelled.closest_idx is None
    write_images(loaded, root)
    for build in (sft_records, grpo_records):
        for mode in ("two-stage", "direct"):
            if build is grpo_records and mode == "direct":
                continue
            expected = f"1 of {len(loaded)} rows cannot train: {unlabelled.uid}: no labels"
            with pytest.raises(DatasetError, match=expected):
                build(loaded, root, mode=mode)
            with pytest.warns(UserWarning, match="dropped 1 of"):
                kept = build(loaded, root, mode=mode, skip_bad=True)
            assert unlabelled.uid not in [row["uid"] for row in kept]
            assert [row["uid"] for row in kept] == [s.uid for s in loaded[1:]]
    # The same sample with explicit "n/a" labels is an unanswerable training target.
    explicit = dataclasses.replace(unlabelled, labelled=True)
    assert grpo_records([explicit], root)[0]["gt_progress"] is None
