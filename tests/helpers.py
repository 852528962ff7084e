"""Small factories shared by tests."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "official_sample"
BENCH_FILES = ["visual_same_view", "visual_cross_view", "visual-unanswerable", "text-normal", "text-unanswerable"]


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.jsonl"


def write_images(samples, image_root: Path, size: int = 56) -> None:
    """A small distinct JPEG at every image path the samples need."""
    from PIL import Image

    for sample in samples:
        for k, name in enumerate(sample.image_names()):
            path = sample.image_path(name, image_root)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                shade = (hash(str(path)) % 200) + 20
                Image.new("RGB", (size, size), (shade, 255 - shade, (k * 40) % 255)).save(path)


TINY_SIM_TASKS = ["pick-place-v3", "drawer-open-v3"]
TINY_SIM_CAMERAS = ["corner", "corner3"]


def tiny_sim_config(out, level="default", **kwargs):
    """A tiny simulator build: 2 tasks (1 bench, 1 sft), 1 camera pair, 64 px, one bench and one sft episode."""
    from progresslm.sim.sim_build import SimBuildConfig

    return SimBuildConfig(preset="tiny", out=str(out), tasks=TINY_SIM_TASKS, cameras=TINY_SIM_CAMERAS, size=64,
                          level=level, workers=1, **kwargs)  # fmt: skip


def changed_tensors(before_dir: Path, after_dir: Path) -> set[str]:
    """Names of the tensors whose values differ between two saved models with the same tensor names."""
    import torch
    from safetensors.torch import load_file

    before = load_file(before_dir / "model.safetensors")
    after = load_file(after_dir / "model.safetensors")
    assert before.keys() == after.keys()
    return {key for key in before if not torch.equal(before[key], after[key])}
