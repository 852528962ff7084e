"""`progresslm train select`: checkpoints compared on a fixed held-out subset, the best copied out."""

from __future__ import annotations

import json
import shutil

import pytest

from progresslm.train.select_checkpoint import candidates, selection_score, subset_bench


def test_subset_is_fixed_and_keeps_file_names(tmp_path):
    from helpers import fixture

    files = [fixture("visual_same_view"), fixture("text-normal")]
    first = subset_bench(files, 2, tmp_path / "a")
    again = subset_bench(files, 2, tmp_path / "b")
    assert [p.name for p in first] == ["visual_same_view.jsonl", "text-normal.jsonl"]
    for a, b, source in zip(first, again, files):
        rows = a.read_text().splitlines()
        assert len(rows) == min(2, len(source.read_text().splitlines()))
        assert rows == b.read_text().splitlines()
        assert set(rows) <= set(source.read_text().splitlines())


def test_candidates_in_step_order_then_the_run(tmp_path):
    for name in ("checkpoint-1000", "checkpoint-250", "checkpoint-50"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "checkpoint-9").mkdir()  # no model inside: ignored
    (tmp_path / "config.json").write_text("{}")
    assert [p.name for p in candidates([tmp_path])] == [
        "checkpoint-50", "checkpoint-250", "checkpoint-1000", tmp_path.name
    ]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="no such directory"):
        candidates([tmp_path / "missing"])


def test_candidates_skip_a_run_root_that_repeats_its_last_checkpoint(tmp_path):
    for name in ("checkpoint-1", "checkpoint-2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"checkpoint-1")  # an older step's weights: kept
    assert [p.name for p in candidates([tmp_path])][-1] == tmp_path.name
    (tmp_path / "model.safetensors").write_bytes(b"checkpoint-2")  # the last step saved twice: skipped
    assert [p.name for p in candidates([tmp_path])] == ["checkpoint-1", "checkpoint-2"]


def test_selection_score_penalises_wrong_na_calls():
    def metrics(nse, afrr, uda):
        return {"splits": {"visual_same_view": {"n": 5, "nse": nse, "afrr": afrr},
                           "visual_unanswerable": {"n": 5, "uda": uda}, "text": {"n": 0, "nse": None}}}  # fmt: skip

    assert selection_score(metrics(20.0, 0.0, 100.0)) == 20.0
    assert selection_score(metrics(20.0, 80.0, 100.0)) == 40.0
    assert selection_score(metrics(20.0, 0.0, 0.0)) == 45.0
    assert selection_score(metrics(None, None, None)) == 150.0  # nothing parseable: the worst score
    # frame order: a trajectory-constant model (PRC-strict 0) loses to one that orders frames
    hedging, reading = metrics(33.5, 0.0, 100.0), metrics(34.8, 0.0, 100.0)
    hedging["splits"]["visual_same_view"]["prc_strict"] = 0.0
    reading["splits"]["visual_same_view"]["prc_strict"] = 86.6
    assert selection_score(hedging) < selection_score(reading)
    assert selection_score(hedging, order_weight=0.25) > selection_score(reading, order_weight=0.25)
    assert selection_score(reading, order_weight=0.25) == pytest.approx(34.8 + 0.25 * (100 - 86.6))
    with pytest.raises(ValueError, match="no answerable split"):
        selection_score({"splits": {"visual_unanswerable": {"n": 5, "uda": 50.0}}})


def test_select_evaluates_every_checkpoint_and_copies_the_best(tiny_vlm_dir, tmp_path, capsys):
    """Two checkpoints of one run (the second without processor files, as Trainer may save them): both
    evaluated on the same rows; the run's root, whose weights are the last checkpoint's, is not; the
    copy loads as a model directory."""
    from helpers import BENCH_FILES, fixture, write_images

    from progresslm.bench.format import load_bench
    from progresslm.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(tiny_vlm_dir, run)
    shutil.copytree(tiny_vlm_dir, run / "checkpoint-1")
    shutil.copytree(tiny_vlm_dir, run / "checkpoint-2")
    for item in (run / "checkpoint-2").iterdir():
        if "processor" in item.name or "tokenizer" in item.name or "chat_template" in item.name:
            item.unlink()
    files = [str(fixture(name)) for name in BENCH_FILES[:2]]
    write_images(load_bench(files).samples, tmp_path / "images")
    code = main(["train", "select", "--runs", str(run), "--bench", *files, "--image-root", str(tmp_path / "images"),
                 "--per-file", "2", "--out", str(tmp_path / "best")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "best" / "select.json").read_text())
    assert [row["model"] for row in report["candidates"]] == [str(run / "checkpoint-1"), str(run / "checkpoint-2")]
    assert report["best"] in {row["model"] for row in report["candidates"]}
    best = min(report["candidates"], key=lambda row: row["score"])
    assert report["best"] == best["model"]
    # every candidate answered the same 4 rows
    assert not (tmp_path / "best.select" / "evals" / "run").exists()
    for name in ("checkpoint-1", "checkpoint-2"):
        lines = (tmp_path / "best.select" / "evals" / name / "results.jsonl").read_text().splitlines()
        assert len(lines) == 4
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert any((tmp_path / "best" / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def test_select_reports_a_missing_run(tmp_path, capsys):
    from progresslm.cli.main import main

    code = main(["train", "select", "--runs", str(tmp_path / "nope"), "--bench", str(tmp_path / "x.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "x.jsonl" in err
    code = main(["train", "select", "--runs", str(tmp_path), "--bench", str(tmp_path / "x.jsonl"), "--order-weight", "-1"])
    assert code == 2 and "--order-weight must be >= 0" in capsys.readouterr().err
