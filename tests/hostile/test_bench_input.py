"""Bench files a careless user or an attacker hands to `progresslm eval`: each gets one line naming the file and
line, exit status 2, before any model call."""

from __future__ import annotations

import json

import pytest
from helpers import fixture

from progresslm.bench.format import BenchFormatError, read_official
from progresslm.cli.main import main

ROW = json.loads(fixture("visual_same_view").read_text().splitlines()[0])


def write(tmp_path, text: str | bytes, name: str = "bench.jsonl"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("label", ["NaN", "nan%", "inf%", "-Infinity", 1e400, "1e400%"])
def test_non_finite_labels_are_refused_at_load_time(tmp_path, label):
    record = dict(ROW, progress_score=label)
    text = json.dumps(record, allow_nan=True) if not isinstance(label, float) else json.dumps(record).replace(
        "Infinity", "1e400")
    path = write(tmp_path, json.dumps(ROW) + "\n" + text + "\n")
    with pytest.raises(BenchFormatError, match=rf"{path.name}:2: field 'progress_score' has unreadable value"):
        read_official(path)


@pytest.mark.parametrize("content, message", [
    ((json.dumps(ROW) + "\n").encode("utf-16"), r":1: not UTF-8 text at byte 0 \(UTF-16\? save the file as UTF-8\)"),
    (b'{"id": "a\xff"}\n', r":1: not UTF-8 text at byte 9"),
    ("[" * 100_000 + "]" * 100_000 + "\n", r":1: unreadable JSON \(nested too deeply\)"),
    ('{"id": ' + "9" * 5000 + "}\n", r":1: unreadable JSON \(Exceeds the limit \(4300 digits\)"),
])  # fmt: skip
def test_unreadable_files_name_the_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(BenchFormatError, match=message):
        read_official(path)


def test_eval_reports_them_in_one_line_with_status_2(tmp_path, capsys):
    path = write(tmp_path, (json.dumps(ROW) + "\n").encode("utf-16"))
    assert main(["eval", "--bench", str(path), "--backend", "constant", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}:1: not UTF-8" in err
    assert not (tmp_path / "run" / "results.jsonl").exists()
