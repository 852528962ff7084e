import json

import pytest
from helpers import BENCH_FILES, FIXTURES, fixture

from progresslm.bench.format import (
    BenchFormatError,
    load_bench,
    parse_percent,
    read_official,
    sample_to_record,
    write_official,
)
from progresslm.types import Modality, View


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.jsonl")), ids=lambda p: p.stem)
def test_round_trip_gives_back_the_same_records(path, tmp_path):
    original = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bench = read_official(path)
    assert [sample_to_record(s) for s in bench.samples] == original
    out = write_official(bench.samples, tmp_path / path.name)
    assert [json.loads(line) for line in out.read_text().splitlines()] == original
    # and key order is kept, so a diff of the two files is empty
    assert [list(json.loads(line)) for line in out.read_text().splitlines()] == [list(r) for r in original]


def test_axes_come_from_content_not_file_name(tmp_path):
    # copy a cross-view row into a file whose name says "same view": the row stays cross-view
    row = fixture("visual_cross_view").read_text().splitlines()[0]
    path = tmp_path / "visual_same_view.jsonl"
    path.write_text(row + "\n")
    (sample,) = read_official(path).samples
    assert sample.view is View.CROSS and sample.split == "visual_cross_view"
    assert (sample.demo_camera, sample.observation_camera) == ("camera_left", "camera_top")
    # without camera_combination the cameras in the file names still tell
    record = json.loads(row)
    del record["camera_combination"]
    path.write_text(json.dumps(record) + "\n")
    assert read_official(path).samples[0].view is View.CROSS


def test_quirks_are_read():
    same = read_official(fixture("visual_same_view")).samples[1]
    assert same.uid == "visual_same_view:2"
    assert same.demo.total_steps == 4 and same.closest_idx == 3  # both strings in the file
    assert same.progress == pytest.approx(0.33) and same.delta == pytest.approx(-0.11)
    assert same.observation == "camera_top_0052.jpg"  # one-element list in the file
    human = read_official(fixture("human_text_demo")).samples[1]
    assert human.progress == pytest.approx(0.0141) and human.modality is Modality.TEXT
    unanswerable = read_official(fixture("text-unanswerable")).samples[0]
    assert unanswerable.progress is None and unanswerable.closest_idx is None and not unanswerable.answerable
    assert unanswerable.split == "text_unanswerable"
    visual_na = read_official(fixture("visual-unanswerable")).samples[0]
    assert visual_na.split == "visual_unanswerable" and visual_na.delta is None


def test_splits_of_the_fixture_files():
    bench = load_bench([fixture(name) for name in BENCH_FILES])
    splits = {s.split for s in bench.samples}
    assert splits == {"visual_same_view", "visual_cross_view", "visual_unanswerable", "text", "text_unanswerable"}
    assert bench.defects == []


def test_defects_are_reported_with_file_and_line_and_rows_kept(tmp_path):
    rows = [json.loads(line) for line in fixture("visual_same_view").read_text().splitlines()[:3]]
    rows[0]["visual_demo"] = rows[0]["visual_demo"][:-1]  # 4 items for T=4
    rows[1]["closest_idx"] = "9"  # outside 1..5
    rows[2]["task_goal"] = "[placeholder]"
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = read_official(path)
    assert len(bench.samples) == 3
    found = {(d.line, d.kind) for d in bench.defects}
    assert found == {(1, "demo_length"), (2, "anchor_out_of_range"), (3, "placeholder_text")}
    assert str(bench.defects[0]).startswith(f"{path}:1: demo_length")
    # nothing was fixed
    assert len(bench.samples[0].demo.items) == 4 and bench.samples[1].closest_idx == 9


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": "a", "task_goal": "g"', "not valid JSON"),
        ('{"task_goal": "g", "text_demo": ["s"], "stage_to_estimate": "x.jpg"}', "missing field 'id'"),
        ('{"id": "a", "task_goal": "g", "stage_to_estimate": "x.jpg"}', "exactly one of"),
        ('{"id": "a", "task_goal": "g", "text_demo": ["s"], "total_steps": "one", "stage_to_estimate": "x.jpg"}',
         "'total_steps'"),
        ('{"id": "a", "task_goal": "g", "text_demo": ["s"], "stage_to_estimate": "x.jpg", "progress_score": "lots"}',
         "'progress_score'"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "broken.jsonl"
    good = fixture("text-normal").read_text().splitlines()[0]
    path.write_text(good + "\n\n" + text + "\n")
    with pytest.raises(BenchFormatError) as err:
        read_official(path)
    assert f"{path}:3:" in str(err.value) and message in str(err.value)


def test_same_stem_twice_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.jsonl").write_text(fixture("text-normal").read_text())
    with pytest.raises(BenchFormatError, match="share the stem"):
        load_bench([tmp_path / "a" / "x.jsonl", tmp_path / "b" / "x.jsonl"])


def test_missing_file_and_no_file():
    with pytest.raises(BenchFormatError, match="no such benchmark file"):
        read_official("nope.jsonl")
    with pytest.raises(BenchFormatError, match="no benchmark file"):
        load_bench([])


def test_percent_forms():
    assert parse_percent("20%") == 0.2
    assert parse_percent("-0%") == 0.0
    assert parse_percent(" N/A ") is None
    assert parse_percent(35) == 0.35


def test_written_samples_get_fresh_spelling_when_changed(tmp_path):
    sample = read_official(fixture("visual_same_view")).samples[0]
    sample.progress, sample.closest_idx, sample.delta = 0.125, 2, -0.125
    record = sample_to_record(sample)
    assert (record["progress_score"], record["closest_idx"], record["delta"]) == ("12.5%", 2, "-12.5%")


def test_a_row_without_labels_is_not_an_unanswerable_one(tmp_path):
    record = json.loads(fixture("visual_same_view").read_text().splitlines()[0])
    for key in ("progress_score", "closest_idx", "delta"):
        del record[key]
    path = tmp_path / "unlabelled.jsonl"
    path.write_text(json.dumps(record) + "\n")
    bench = read_official(path)
    (sample,) = bench.samples
    assert not sample.labelled
    assert [d.kind for d in bench.defects] == ["missing_labels"]
    assert sample_to_record(sample) == record  # written back without inventing "n/a" labels
