"""`pip install .` without extras: the CLI works and `eval` falls back to the drawn example benchmark, leaving no
partial simulator build behind. Runs in a fresh venv (no system packages), so it needs pip's index (PyPI, or this
machine's wheel folders) for numpy, Pillow, httpx, tqdm, PyYAML and matplotlib: about 20 s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A fresh venv installs from the package index (about 20 s, and the network): out of the default run, in `make test-all`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    if pip.returncode != 0:
        pytest.fail(f"pip install . failed:\n{pip.stderr[-2000:]}")
    return venv


def test_the_core_install_has_no_heavy_packages(core_venv):
    listed = subprocess.run([str(core_venv / "bin" / "pip"), "list"], capture_output=True, text=True).stdout.lower()
    assert "progresslm" in listed and "numpy" in listed
    assert not any(name in listed for name in ("torch", "mujoco", "metaworld", "transformers"))


def test_eval_falls_back_to_the_drawn_example_and_leaves_no_partial_build(core_venv, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "PROGRESSLM_HOME": str(home)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(core_venv / "bin" / "progresslm"), "eval", "--backend", "pixel-nn", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using the drawn example benchmark" in done.stderr and "pip install -e '.[sim]'" in done.stderr
    assert sorted(p.name for p in home.iterdir()) == ["example-v1"]  # no sim-small-* folder
    table = [line for line in done.stdout.splitlines() if not line.startswith("  /")]  # paths may be long
    assert max(len(line) for line in table) <= 100 and "pixel-nn" in done.stdout and "(floor)" in done.stdout
    assert (tmp_path / "run" / "report.html").is_file()


def test_help_and_version_need_nothing_else(core_venv):
    exe = str(core_venv / "bin" / "progresslm")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    from progresslm import __version__

    assert version.stdout.strip() == f"progresslm {__version__}"
    assert subprocess.run([exe, "eval", "--help"], capture_output=True, text=True).returncode == 0
