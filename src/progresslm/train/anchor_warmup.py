"""Warm-start a from-scratch Qwen2.5-VL vision tower on episodic retrieval itself (before SFT).

The first stage of the two-stage answer is "which keyframe is the observation nearest to". In nano
v0.2 the answer sits mostly in its tower, and the tower is weak at it: on held-out visual same-view
samples of the full preset's rl pool (150 drawn), the nearest keyframe by cosine of the mean image token
is the labelled anchor for 43 % (state-warmup tower) where EfficientNet-Lite0 gets 58 %. Here the
tower learns that comparison directly: for each visual sample with an anchor, the softmax over the
cosines between the observation's mean token and each keyframe's (minus a learned centre, over a
temperature) is trained with cross-entropy towards the labelled anchor. Cross-view samples teach it
to compare across cameras.

Measured (2-core CPU, 300 steps from nano's state tower, 5.8 min): nearest-keyframe accuracy on the
rl pool 0.43 -> 0.48 same-view and 0.37 -> 0.42 cross-view (EfficientNet: 0.58 / 0.26). It is not in
`make nano`: a 660-step SFT from this tower (the time the 90-minute budget leaves) read the frames
worse than nano v0.2's recipe on 80 held-out rl rows (NSE / PRC 37.8 / 10.6 vs 23.8 / 73.7).

    progresslm train anchor-warmup --model runs/nano/state \\
        --bench "~/.cache/progresslm/sim-full-s0-v3/sft/visual_*.jsonl" \\
        --image-root ~/.cache/progresslm/sim-full-s0-v3/images --out runs/nano/anchor

Only the rows given are read (use the sft split, so the tasks of `rl` and `bench` stay unseen). The
architecture stays Qwen2.5-VL; only the tower's weights change.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

ANCHOR_FILE = "anchor_warmup.json"


def anchor_groups(
    files: Sequence[str | Path], image_root: str | Path | None, leave_out: Sequence[str] = ()
) -> tuple[list[list[Path]], list[int], list[str]]:
    """The visual samples with an anchor in benchmark `files`: for each, its image paths (keyframes,
    then the observation), its 0-based anchor and its task (`sim.task`, else the trajectory id).
    Samples of tasks in `leave_out` are skipped."""
    from progresslm.official import load_bench
    from progresslm.types import Modality

    groups, anchors, tasks = [], [], []
    for sample in load_bench(files).samples:
        if sample.modality is not Modality.VISUAL or sample.closest_idx is None or len(sample.demo.items) < 2:
            continue
        task = str((sample.extra.get("sim") or {}).get("task", sample.trajectory_id))
        if task in leave_out:
            continue
        groups.append([sample.image_path(name, image_root) for name in sample.image_names()])
        anchors.append(sample.closest_idx - 1)
        tasks.append(task)
    if not groups:
        raise ValueError(f"no visual sample with an anchor and 2+ keyframes in {[str(f) for f in files]}")
    missing = sorted({str(p) for group in groups for p in group if not p.is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} images missing, first {missing[0]} (check --image-root)")
    return groups, anchors, tasks


def anchor_warmup(
    model_dir: str | Path,
    out_dir: str | Path,
    files: Sequence[str | Path],
    image_root: str | Path | None,
    steps: int = 300,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    temperature: float = 0.1,
    held_out: int = 200,
    leave_out: Sequence[str] = (),
    seed: int = 0,
    log_every: int = 50,
) -> dict:
    """Train the vision tower of the model in `model_dir` so that the observation of each sample of
    `files` is nearest (cosine of centred mean tokens) to its labelled keyframe; save the whole model
    (tower updated) and processor to `out_dir`. `batch_size` counts samples (each 3-7 images).

    Returns (and writes to `out_dir/anchor_warmup.json`) the nearest-keyframe accuracy on `held_out`
    samples of tasks not trained on (whole tasks are held out) and on up to 256 training samples,
    before and after, and the time taken.
    """
    import torch

    from progresslm.train.distill import load_rgb, load_warm_start, save_warm_start, tower_tokens, train_tower

    torch.manual_seed(seed)
    rng = random.Random(seed)
    started = time.perf_counter()
    groups, anchors, tasks = anchor_groups(files, image_root, leave_out)
    names = sorted(set(tasks))
    if len(names) < 2:
        raise ValueError(f"samples of {len(names)} task(s): need 2 or more (tasks are held out whole)")
    rng.shuffle(names)
    test_tasks = set(names[: max(1, len(names) // 8)])
    test = [i for i, task in enumerate(tasks) if task in test_tasks]
    train = [i for i, task in enumerate(tasks) if task not in test_tasks]
    rng.shuffle(test)
    test = test[:held_out]
    if len(train) < batch_size:
        raise ValueError(f"{len(train)} training samples: fewer than the batch size {batch_size}")

    processor, model = load_warm_start(model_dir)
    hidden = model.config.text_config.hidden_size
    centre = torch.nn.Parameter(torch.zeros(hidden))
    cache: dict[Path, object] = {}

    def images(paths):
        todo = [p for p in dict.fromkeys(paths) if p not in cache]
        cache.update(zip(todo, load_rgb(todo)))
        return [cache[p] for p in paths]

    def logits(indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosines over the temperature, padded with -inf to the longest demo, and the anchors."""
        paths = [p for i in indices for p in groups[i]]
        tokens = tower_tokens(model, processor, images(paths), per_image=True)
        per_image = torch.stack([t.mean(dim=0) for t in tokens])
        vectors = torch.nn.functional.normalize(per_image - centre, dim=-1)
        width = max(len(groups[i]) - 1 for i in indices)
        out = torch.full((len(indices), width), float("-inf"))
        at = 0
        for row, i in enumerate(indices):
            n = len(groups[i])
            out[row, : n - 1] = vectors[at : at + n - 1] @ vectors[at + n - 1] / temperature
            at += n
        return out, torch.tensor([anchors[i] for i in indices])

    def accuracy(indices) -> float:
        if not indices:
            return float("nan")
        right = 0
        with torch.no_grad():
            for start in range(0, len(indices), 32):
                out, target = logits(indices[start : start + 32])
                right += int((out.argmax(dim=1) == target).sum())
        return right / len(indices)

    fit = train[:256]
    before, fit_before = accuracy(test), accuracy(fit)
    log.info("nearest-keyframe accuracy before: held-out tasks %.3f, training %.3f", before, fit_before)

    def batch_loss():
        return torch.nn.functional.cross_entropy(*logits(rng.sample(train, batch_size)))

    train_tower(model, [*model.model.visual.parameters(), centre], steps, learning_rate, batch_loss,
                lambda step, loss: f"anchor warm-up step {step}/{steps}: loss {loss:.4f}, held-out accuracy "
                f"{accuracy(test):.3f}", log_every)  # fmt: skip
    report = {
        "target": "the labelled keyframe is the nearest (cosine of centred mean image tokens) to the observation",
        "samples": len(groups),
        "tasks": len(names),
        "held_out_tasks": sorted(test_tasks),
        "held_out": len(test),
        "left_out": list(leave_out),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "temperature": temperature,
        "held_out_accuracy_before": round(before, 4),
        "held_out_accuracy_after": round(accuracy(test), 4),
        "train_accuracy_before": round(fit_before, 4),
        "train_accuracy_after": round(accuracy(fit), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_warm_start(model, processor, out_dir, ANCHOR_FILE, report)
    return report
