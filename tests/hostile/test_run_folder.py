"""A run folder is one run: replies of another backend, model or mode are never reused, config.json or not."""

from __future__ import annotations

import json

from helpers import BENCH_FILES, fixture

from progresslm.cli.main import main


def test_replies_of_another_backend_are_refused_even_without_config_json(tmp_path, capsys):
    bench = [str(fixture(name)) for name in BENCH_FILES]
    out = tmp_path / "run"
    common = ["eval", "--bench", *bench, "--out", str(out), "--quiet", "--no-plots", "--bootstrap", "0"]
    assert main([*common, "--backend", "random"]) == 0
    (out / "config.json").unlink()  # the folder-level check has nothing to compare with now
    metrics = (out / "metrics.json").read_text()
    assert main([*common, "--backend", "constant"]) == 2
    err = capsys.readouterr().err
    assert "holds" in err and "replies of another run" in err and "backend 'random'" in err
    assert (out / "metrics.json").read_text() == metrics  # nothing was overwritten
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {row["backend"] for row in rows} == {"random"}


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    import os
    import subprocess
    import sys
    import time

    import pytest

    from progresslm.evaluation import EvalConfig, EvalError, evaluate

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from progresslm.results import RunLock\n"
        f"lock = RunLock({str(out)!r}).__enter__(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = EvalConfig(bench=[str(fixture("visual_same_view"))], out=str(out), backend="constant", plots=False)
        with pytest.raises(EvalError, match=f"being written by another run \\(pid {holder.pid}\\)"):
            evaluate(config, progress=False)
        assert not (out / "results.jsonl").exists()
    finally:
        holder.kill()  # as `kill -9` would: the lock goes with the process
        holder.wait()
    time.sleep(0.1)
    assert evaluate(config, progress=False).done > 0  # the stale lock file does not block the resume
    assert (out / ".lock").read_text().strip() == str(os.getpid())
