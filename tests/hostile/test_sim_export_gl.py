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
