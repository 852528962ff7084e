"""Train a model's vision tower to regress simulator state from frames, for `nano_overfit.py`.

    python benchmarks/nano_state_tower.py --model runs/nano/distilled --out runs/state-tower \
        [--trajectories 80] [--steps 400] [--center]
    python benchmarks/nano_overfit.py --model runs/state-tower

Re-runs the scripted expert of sft-split trajectories of the full simulator build (their seeds are in
the rows) to get the hand position, object position and gripper opening at every sampled frame, and
trains the tower, through a linear head on its merged tokens that is thrown away, to predict them
(standardised) from the frame. assembly-v3, whose trajectories `nano_overfit.py` fits, is left out.
Prints the held-out R^2 (frames not trained on) and saves the model. It asks whether a tower whose
tokens tell frames of one episode apart is enough for the language model to read them.
`--center` then centres and scales the tower's output (`progresslm.train.distill.center_tower`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import time
from pathlib import Path

LEFT_OUT = "assembly-v3"


def state_frames(trajectories: int, rng: random.Random) -> tuple[list[Path], list]:
    """Frames of `trajectories` sft-split episodes of the full build (not LEFT_OUT) and, for each, the
    hand position, object position and gripper opening (7 numbers) from re-running the expert."""
    import numpy as np

    from progresslm.sim.rollout import rollout

    build = Path(os.environ.get("PROGRESSLM_HOME", "~/.cache/progresslm")).expanduser() / "sim-full-s0-v3"
    rows = [json.loads(line) for line in (build / "sft" / "visual_same_view.jsonl").read_text().splitlines()]
    episodes = collections.defaultdict(list)
    for row in rows:
        if row["sim"]["task"] != LEFT_OUT:
            episodes[(row["id"], row["sim"]["task"], row["sim"]["obs_seed"])].append(row)
    keys = sorted(episodes)
    rng.shuffle(keys)
    paths, targets = [], []
    for trajectory, task, seed in keys[:trajectories]:
        episode = rollout(task, seed)
        if episode is None:
            continue
        trace = episode.trace
        for row in episodes[(trajectory, task, seed)]:
            frame = row["sim"]["obs_frame"]
            paths.append(build / "images" / trajectory / row["stage_to_estimate"][0])
            targets.append(np.concatenate([trace.hand[frame], trace.obj[frame], [trace.gripper[frame]]]))
    return paths, targets


def state_parser(description: str, steps: int, batch: int) -> argparse.ArgumentParser:
    """The options this script and `nano_align.py` share: model in, model out, data size, optimiser."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trajectories", type=int, default=80)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=1e-3)
    return parser


def main() -> None:
    parser = state_parser(__doc__.splitlines()[0], steps=400, batch=32)
    parser.add_argument("--center", action="store_true")
    parser.add_argument(
        "--pooled",
        action="store_true",
        help="the head reads the mean of the image's tokens, so the state must be in every token's "
        "content, not in which token holds what (what attention-averaging reads easily)",
    )
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from progresslm.train.distill import center_tower

    torch.manual_seed(0)
    rng = random.Random(0)
    started = time.perf_counter()
    paths, targets = state_frames(args.trajectories, rng)
    print(
        f"{len(paths)} frames of {args.trajectories} trajectories re-simulated in {time.perf_counter() - started:.0f} s"
    )
    y = torch.tensor(np.array(targets), dtype=torch.float32)
    y = (y - y.mean(0)) / (y.std(0) + 1e-6)

    processor = AutoProcessor.from_pretrained(args.model)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model)
    images = [Image.open(path).convert("RGB") for path in paths]
    inner = model.model

    def tokens(indices):
        inputs = processor.image_processor(images=[images[i] for i in indices], return_tensors="pt")
        return torch.cat(inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output)

    per_image = tokens([0]).shape[0]
    hidden = model.config.text_config.hidden_size
    head = torch.nn.Linear(hidden if args.pooled else per_image * hidden, y.shape[1])

    def features(indices):
        out = tokens(indices).reshape(len(indices), per_image, hidden)
        return out.mean(dim=1) if args.pooled else out.reshape(len(indices), -1)

    parameters = [*inner.visual.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    order = list(range(len(images)))
    rng.shuffle(order)
    test, train = order[:60], order[60:]

    def r2(indices) -> float:
        with torch.no_grad():
            predicted = head(features(indices))
        truth = y[indices]
        return float(1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())

    print(f"held-out R^2 before: {r2(test):.3f}")
    inner.visual.train()
    for step in range(1, args.steps + 1):
        batch = rng.sample(train, min(args.batch, len(train)))
        loss = torch.nn.functional.mse_loss(head(features(batch)), y[batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.4f}, held-out R^2 {r2(test):.3f}", flush=True)
    inner.visual.eval()
    if args.center:
        with torch.no_grad():
            batches = [tokens(train[i : i + 64]) for i in range(0, min(len(train), 768), 64)]
        print("centred:", center_tower(model, batches))
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"saved {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
