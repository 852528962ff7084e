"""`--quiet` prints nothing but errors: no line per HTTP request from httpx (which logs at INFO on the root logger).

Run as a subprocess: inside pytest the root logger already has pytest's handlers, which hides the problem."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import fixture, write_images

from progresslm.bench.format import load_bench
from tests.backends.fake_openai_server import FakeServer


def test_quiet_eval_through_an_http_backend_prints_nothing(tmp_path):
    bench = fixture("visual_same_view")
    write_images(load_bench([bench]).samples[:3], tmp_path / "images")
    small = tmp_path / "visual_same_view.jsonl"
    small.write_text("\n".join(bench.read_text().splitlines()[:3]) + "\n")
    server = FakeServer().start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "progresslm.cli.main", "eval", "--bench", str(small), "--image-root",
             str(tmp_path / "images"), "--backend", "openai", "--base-url", server.base_url, "--model", "m",
             "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": "test-key"},
        )  # fmt: skip
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "HTTP Request" not in done.stderr and "INFO" not in done.stderr, done.stderr


def test_log_levels_follow_the_flags_and_leave_third_party_loggers_at_warning():
    import logging

    from progresslm.cli.main import configure_logging

    package = logging.getLogger("progresslm")
    saved = package.level
    try:
        cases = (({}, logging.INFO), ({"verbose": True}, logging.DEBUG), ({"quiet": True}, logging.ERROR))
        for flags, level in cases:
            configure_logging(**flags)
            assert package.level == level, flags
            assert logging.getLogger("httpx").level == logging.WARNING
        assert sum(getattr(h, "_progresslm", False) for h in package.handlers) == 1  # one handler, however often
    finally:
        package.setLevel(saved)


def test_quiet_eval_of_a_local_checkpoint_prints_no_weight_loading_bars(tiny_vlm_dir, tmp_path):
    """transformers draws a "Loading weights" bar per model load; `make demo` showed two per run under --quiet."""
    write_images(load_bench([fixture("text-normal")]).samples[:2], tmp_path / "images")
    environment = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}  # --quiet must set it
    environment["PROGRESSLM_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "progresslm.cli.main", "eval", "--bench", str(fixture("text-normal")), "--image-root",
         str(tmp_path / "images"), "--backend", "hf", "--model", str(tiny_vlm_dir), "--device", "cpu", "--first", "2",
         "--max-new-tokens", "4",
         "--out", str(tmp_path / "run"), "--quiet", "--no-plots", "--bootstrap", "0", "--no-floors"],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr, done.stderr
