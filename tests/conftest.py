"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# MuJoCo picks its GL backend once, at import: headless EGL unless the caller chose another.
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A random-weight Qwen2.5-VL saved like a hub checkpoint, built once per test session (~5 s)."""
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    from progresslm.train.tiny_model import build_tiny_qwen2_5_vl

    # Untied embeddings: a tied random model repeats its last input token, untied it writes varied
    # text, which makes batching and seeding tests mean something.
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_vlm"), tie_embeddings=False, seed=0)


@pytest.fixture(scope="session")
def tiny_sim_build(tmp_path_factory):
    """`tiny_sim_config` built once per test session (the sim and training tests share it)."""
    pytest.importorskip("metaworld")
    from progresslm.sim.build import build
    from progresslm.sim.render import RenderError, check_gl

    try:
        check_gl()
    except RenderError as err:
        pytest.skip(f"no GL backend: {err}")
    from helpers import tiny_sim_config

    return build(tiny_sim_config(tmp_path_factory.mktemp("sim") / "default"), progress=False)
