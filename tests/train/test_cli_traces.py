import json

from helpers import fixture, write_images

from progresslm.bench.format import read_official
from progresslm.cli.main import main
from progresslm.train.traces import template_trace


def test_teacher_traces_through_the_cli_drop_wrong_ones(tmp_path, capsys):
    """A replayed teacher: right traces for some samples, a wrong anchor for one; the wrong one is dropped."""
    bench = fixture("visual_same_view")
    samples = read_official(bench).samples
    write_images(samples, tmp_path / "images")
    replies = [{"uid": s.uid, "reply": template_trace(s)} for s in samples]
    wrong = samples[1]
    replies[1]["reply"] = template_trace(wrong).replace(f"<ref>{wrong.closest_idx}</ref>",
                                                         f"<ref>{wrong.closest_idx % 5 + 1}</ref>")
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replies))
    out = tmp_path / "traces.jsonl"
    code = main(["train", "traces", "--bench", str(bench), "--image-root", str(tmp_path / "images"),
                 "--backend", "replay", "--replies", str(tmp_path / "teacher.jsonl"), "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["kept"] for r in rows] == [r["uid"] != wrong.uid for r in rows]
    assert f"{len(samples) - 1} of {len(samples)} traces kept" in capsys.readouterr().out
    from progresslm.prompts import build_prompt

    by_uid = {s.uid: s for s in samples}
    for row in rows:
        sample = by_uid[row["uid"]]
        assert row["prompt_hash"] == build_prompt(sample, "two-stage", None).hash
        assert (row["progress"], row["closest_idx"], row["tolerance"]) == (sample.progress, sample.closest_idx, 0.05)


def test_a_rerun_asks_only_for_what_is_missing(tmp_path, capsys):
    """Rows are written as they arrive; after a crash (a cut last line) the same command finishes the file."""
    bench = fixture("visual_same_view")
    samples = read_official(bench).samples
    write_images(samples, tmp_path / "images")
    replies = [{"uid": s.uid, "reply": template_trace(s)} for s in samples]
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replies))
    out = tmp_path / "traces.jsonl"
    args = ["train", "traces", "--bench", str(bench), "--image-root", str(tmp_path / "images"), "--backend", "replay",
            "--replies", str(tmp_path / "teacher.jsonl"), "--out", str(out), "--quiet"]
    assert main(args) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # three whole rows, then a cut one
    capsys.readouterr()
    assert main(args) == 0
    assert f"({3} reused)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{") and line.endswith("}")]
    assert sorted(r["uid"] for r in rows) == sorted(s.uid for s in samples)
    assert main(args) == 0 and f"({len(samples)} reused)" in capsys.readouterr().out  # nothing left to ask


def test_write_teacher_traces_keeps_what_holds_and_names_what_stays_on_error(tmp_path):
    """The library call behind `train traces`: a rerun reuses the rows that hold; a teacher that cannot be created
    is a TeacherError that says how many rows stay written."""
    import pytest

    from progresslm.backends.base import BackendOptions
    from progresslm.train.traces import TeacherError, write_teacher_traces

    bench = fixture("visual_same_view")
    samples = read_official(bench).samples
    write_images(samples, tmp_path / "images")
    (tmp_path / "teacher.jsonl").write_text(
        "".join(json.dumps({"uid": s.uid, "reply": template_trace(s)}) + "\n" for s in samples))
    out = tmp_path / "traces.jsonl"
    options = BackendOptions(replies=str(tmp_path / "teacher.jsonl"))
    first = write_teacher_traces([str(bench)], out, "replay", options, image_root=tmp_path / "images", progress=False)
    assert (first.reused, len(first.rows)) == (0, len(samples)) and all(r.kept for r in first.results)
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:2]))
    with pytest.raises(TeacherError, match=r"no-such-teacher.*; the 2 traces written so far stay in "):
        write_teacher_traces([str(bench)], out, "no-such-teacher", options, progress=False)
    again = write_teacher_traces([str(bench)], out, "replay", options, image_root=tmp_path / "images", progress=False)
    assert again.reused == 2 and sorted(again.rows) == sorted(s.uid for s in samples)
