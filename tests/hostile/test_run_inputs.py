"""Run folders and images a careless user hands to `progresslm eval`, `report` and `watch`: one line naming the
file, exit status 2, and nothing written before is lost."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import BENCH_FILES, fixture, write_images

from progresslm.bench.format import load_bench
from progresslm.cli.main import main

BENCH = [str(fixture(name)) for name in BENCH_FILES]


def evaluate(out, *extra) -> int:
    return main(["eval", "--bench", *BENCH, "--backend", "constant", "--out", str(out), "--quiet", "--no-plots",
                 "--bootstrap", "0", *extra])  # fmt: skip


@pytest.mark.parametrize("make, message", [
    (lambda out: out.write_text("x"), "is a file, not a folder"),
    (lambda out: (out / "config.json").mkdir(parents=True), "config.json is not a file"),
    (lambda out: (out / "results.jsonl").mkdir(parents=True), "results.jsonl is not a file"),
    (lambda out: (out.mkdir(), (out / "config.json").write_bytes(b"\xff\xfe{")), "is not valid UTF-8 JSON"),
])  # fmt: skip
def test_broken_run_folders_are_named(tmp_path, capsys, make, message):
    out = tmp_path / "run"
    make(out)
    assert evaluate(out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_full_disk_keeps_what_was_written_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from progresslm.results import ResultStore

    original = ResultStore.append
    calls = []

    def append(self, record):
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        calls.append(record.uid)
        original(self, record)

    monkeypatch.setattr(ResultStore, "append", append)
    out = tmp_path / "run"
    assert evaluate(out) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "run the same command again to resume" in err
    kept = [json.loads(line)["uid"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert kept == calls
    monkeypatch.setattr(ResultStore, "append", original)
    assert evaluate(out) == 0  # the resume makes only the rest
    assert len((out / "results.jsonl").read_text().splitlines()) == len(load_bench(BENCH).samples)


@pytest.mark.parametrize("content, message", [
    (b"{bad", "metrics.json:1: malformed JSON"),
    (b"\xff\xfe{", "metrics.json: not UTF-8 text (byte 0)"),
    (b'{"splits": {"micro": []}}', "metrics.json: splits.micro is not an object"),
    (b'{"splits": {"micro": {"nse": "12%"}}}', "metrics.json: splits.micro nse is '12%', not a number"),
])  # fmt: skip
def test_report_on_a_corrupt_metrics_file(tmp_path, capsys, content, message):
    out = tmp_path / "run"
    assert evaluate(out) == 0
    (out / "metrics.json").write_bytes(content)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_decompression_bombs_are_refused_in_eval(tmp_path, capsys, monkeypatch):
    from PIL import Image

    samples = load_bench([BENCH[0]]).samples[:1]
    root = tmp_path / "images"
    write_images(samples, root, size=64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 > 2 x 1000: PIL calls it a bomb
    bench = tmp_path / "visual_same_view.jsonl"
    bench.write_text(fixture("visual_same_view").read_text().splitlines()[0] + "\n")
    code = main(["eval", "--bench", str(bench), "--image-root", str(root), "--backend", "pixel-nn", "--out",
                 str(tmp_path / "run"), "--quiet", "--no-plots"])  # fmt: skip
    assert code == 2
    assert "cannot read image (DecompressionBombError" in capsys.readouterr().err
