"""Warm-start a from-scratch Qwen2.5-VL vision tower on the simulator's state (before SFT).

A tiny language model trained from scratch learns a coarse image signal fast, but on
`benchmarks/nano_overfit.py` it could not learn small differences between the image tokens of two
frames of one episode when the tower kept what it saw in *which* token shows what (an EfficientNet
distilled tower, or one regressing the state from its flattened tokens): it answered the best
constant. Here the tower learns to regress, through a linear head on the **mean** of its merged
tokens (thrown away afterwards), the hand position, object position and gripper opening of each frame,
re-simulated from the seeds in the rows of a simulator build (`progresslm sim build`). The state then
sits in every token's content, which attention averages easily: on the overfit check the language
model starts to tell the frames apart (see the model card of `progresslm.models.nano`).

    progresslm train state-warmup --model runs/nano/distilled --build ~/.cache/progresslm/sim-full-s0-v3 \\
        --out runs/nano/state

Only the build's `sft` split is read, so the tasks of the `rl` and `bench` splits stay unseen. The
architecture stays Qwen2.5-VL; only the tower's weights change.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "state_warmup.json"
ROWS_FILE = "visual_same_view.jsonl"  # one row per sampled frame, with the episode's seed and frame index
STATE_NAMES = ("hand_x", "hand_y", "hand_z", "obj_x", "obj_y", "obj_z", "gripper")


def state_frames(
    build: str | Path,
    trajectories: int,
    rng: random.Random,
    split: str = "sft",
    leave_out: Sequence[str] = (),
) -> tuple[list[Path], list[list[float]], list[str]]:
    """The observation frames of `trajectories` episodes (drawn with `rng`) of a simulator build's
    `split`, tasks in `leave_out` skipped, and for each frame its state (`STATE_NAMES`) from re-running
    the task's scripted expert with the row's seed. Returns (image paths, states, task of each frame)."""
    import numpy as np

    from progresslm.sim.rollout import rollout

    build = Path(build).expanduser()
    rows_file = build / split / ROWS_FILE
    if not rows_file.is_file():
        raise FileNotFoundError(
            f"{rows_file} not found: --build must be a simulator build directory (progresslm sim build)"
        )
    episodes = collections.defaultdict(list)
    for number, line in enumerate(rows_file.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            key = (row["id"], row["sim"]["task"], int(row["sim"]["obs_seed"]))
            frame = (int(row["sim"]["obs_frame"]), row["stage_to_estimate"][0])
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ValueError(
                f"{rows_file}:{number}: not a simulator row with sim.task/obs_seed/obs_frame ({error!r})"
            ) from None
        if key[1] not in leave_out:
            episodes[key].append(frame)
    if not episodes:
        raise ValueError(f"{rows_file}: no trajectories left after leaving out {list(leave_out)}")
    keys = sorted(episodes)
    rng.shuffle(keys)
    paths, states, tasks = [], [], []
    for trajectory, task, seed in keys[:trajectories]:
        episode = rollout(task, seed)
        if episode is None:
            log.warning("%s seed %d: the expert did not finish again; skipped", task, seed)
            continue
        trace = episode.trace
        for frame, image in episodes[(trajectory, task, seed)]:
            if frame >= len(trace):
                raise ValueError(f"{rows_file}: {trajectory} asks for frame {frame}, the re-run has {len(trace)}")
            paths.append(build / "images" / trajectory / image)
            states.append(np.concatenate([trace.hand[frame], trace.obj[frame], [trace.gripper[frame]]]).tolist())
            tasks.append(task)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} frames missing from the build, first {missing[0]}")
    return paths, states, tasks


def state_warmup(
    model_dir: str | Path,
    out_dir: str | Path,
    build: str | Path,
    trajectories: int = 80,
    steps: int = 800,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    held_out: int = 60,
    leave_out: Sequence[str] = (),
    pooled: bool = True,
    seed: int = 0,
    log_every: int = 50,
) -> dict:
    """Train the vision tower of the model in `model_dir` to regress the standardised state of the
    frames `state_frames` returns; save the whole model (tower updated) and processor to `out_dir`.

    `pooled` (default): the head reads the mean of an image's merged tokens; otherwise all of them
    flattened (kept to compare: that tower regresses the state as well but the language model did
    not read it). Returns (and writes to `out_dir/state_warmup.json`) the R^2 on `held_out` frames
    not trained on and on up to 256 training frames, before and after, and the time taken.
    """
    import numpy as np
    import torch

    from progresslm.train.distill import load_rgb, load_warm_start, save_warm_start, tower_tokens, train_tower

    torch.manual_seed(seed)
    rng = random.Random(seed)
    started = time.perf_counter()
    paths, states, tasks = state_frames(build, trajectories, rng, leave_out=leave_out)
    if len(paths) < held_out + batch_size:
        raise ValueError(
            f"{len(paths)} frames: need more than held_out + batch size ({held_out + batch_size}); raise --trajectories"
        )
    simulated = time.perf_counter() - started
    log.info("%d frames of %d tasks re-simulated in %.0f s", len(paths), len(set(tasks)), simulated)
    y = torch.tensor(np.array(states), dtype=torch.float32)
    y = (y - y.mean(0)) / (y.std(0) + 1e-6)

    processor, model = load_warm_start(model_dir)
    images = load_rgb(paths)

    def tokens(indices):
        return tower_tokens(model, processor, [images[i] for i in indices])

    per_image = tokens([0]).shape[0]
    hidden = model.config.text_config.hidden_size
    head = torch.nn.Linear(hidden if pooled else per_image * hidden, y.shape[1])

    def features(indices):
        out = tokens(indices).reshape(len(indices), per_image, hidden)
        return out.mean(dim=1) if pooled else out.reshape(len(indices), -1)

    parameters = [*model.model.visual.parameters(), *head.parameters()]
    order = list(range(len(images)))
    rng.shuffle(order)
    test, train = order[:held_out], order[held_out:]

    def r2(indices) -> float:
        with torch.no_grad():
            predicted = head(features(indices))
        truth = y[indices]
        return float(1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())

    fit = train[:256]  # training frames to report the fit on
    before, fit_before = r2(test), r2(fit)

    def batch_loss():
        batch = rng.sample(train, min(batch_size, len(train)))
        return torch.nn.functional.mse_loss(head(features(batch)), y[batch])

    train_tower(model, parameters, steps, learning_rate, batch_loss,
                lambda step, loss: f"state warm-up step {step}/{steps}: loss {loss:.4f}, held-out R^2 {r2(test):.3f}",
                log_every)  # fmt: skip
    report = {
        "target": "standardised " + ", ".join(STATE_NAMES) + " of each frame (scripted expert re-run)",
        "head": "linear on the mean of the image's tokens" if pooled else "linear on the image's tokens, flattened",
        "frames": len(paths),
        "trajectories": trajectories,
        "tasks": len(set(tasks)),
        "left_out": list(leave_out),
        "held_out": held_out,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "held_out_r2_before": round(before, 4),
        "held_out_r2_after": round(r2(test), 4),
        "train_r2_before": round(fit_before, 4),
        "train_r2_after": round(r2(fit), 4),
        "simulation_seconds": round(simulated, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_warm_start(model, processor, out_dir, STATE_FILE, report)
    return report
