"""`--quiet` prints nothing but errors: no line per HTTP request from httpx (which logs at INFO on the root logger)."""

from __future__ import annotations

from helpers import fixture, write_images

from progresslm.cli.main import main
from progresslm.official import load_bench
from tests.backends.fake_openai_server import FakeServer


def test_quiet_eval_through_an_http_backend_prints_nothing(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    bench = fixture("visual_same_view")
    write_images(load_bench([bench]).samples[:3], tmp_path / "images")
    lines = bench.read_text().splitlines()[:3]
    small = tmp_path / "visual_same_view.jsonl"
    small.write_text("\n".join(lines) + "\n")
    server = FakeServer().start()
    try:
        code = main(["eval", "--bench", str(small), "--image-root", str(tmp_path / "images"), "--backend", "openai",
                     "--base-url", server.base_url, "--model", "m", "--out", str(tmp_path / "run"), "--quiet",
                     "--no-plots"])  # fmt: skip
    finally:
        server.stop()
    out, err = capfd.readouterr()
    assert code == 0
    assert "HTTP Request" not in err and "INFO" not in err, err
