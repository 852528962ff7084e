"""Issue 25: `sim export-videos` on a machine without a display and without MUJOCO_GL. MuJoCo picks its GL backend
when first imported, so the EGL default must be set before the rollouts import it (as `sim build` does); then no
GLFW attempt and no AttributeError from Renderer.__del__. Run in a child process with the variables removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("metaworld")

CHILD = """
import os, sys
from pathlib import Path
from progresslm.sim.export_videos import export_videos
from progresslm.sim.metaworld.tasks import UnknownTaskError
try:
    export_videos(["no-such-task-v3"], 1, Path(sys.argv[1]))
except UnknownTaskError:
    pass
import mujoco
print(os.environ.get("MUJOCO_GL"), mujoco.gl_context.GLContext.__module__)
"""


def test_export_videos_sets_the_egl_default_before_mujoco_is_imported(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY",
                                                             "WAYLAND_DISPLAY")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["egl", "mujoco.egl"]
    assert "AttributeError" not in done.stderr and "glfw" not in done.stderr.lower()


def test_export_videos_without_working_gl_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """When offscreen GL does not work, `sim export-videos` says what to install in one line (exit 2), writes nothing."""
    from progresslm.cli import sim as sim_cli
    from progresslm.cli.main import main
    from progresslm.sim.mujoco_scene.render import RenderError

    def no_gl(*args, **kwargs):
        raise RenderError("offscreen OpenGL does not work here (EGL: no display); install libegl1 or libosmesa6")

    monkeypatch.setattr(sim_cli, "simulator_problem", lambda families: None)
    monkeypatch.setattr("progresslm.sim.export_videos.check_gl", no_gl)
    out = tmp_path / "videos"
    assert main(["sim", "export-videos", "--tasks", "drawer-open-v3", "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "libegl1" in err and not out.exists()
