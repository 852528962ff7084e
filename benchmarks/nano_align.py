"""An alignment stage for a small VLM: teach it to write the simulator state it sees, then check it with
`nano_overfit.py`.

    python benchmarks/nano_align.py --model runs/nano/distilled --out runs/aligned [--trajectories 80] [--steps 300]
    python benchmarks/nano_overfit.py --model runs/aligned

Larger VLMs learn to describe images before they learn a task. Here each frame of sft-split episodes
(re-simulated as `progresslm train state-warmup` does; assembly-v3 left out) gets a caption of its state, every
number in one of 10 bins (deciles over the frames): "hand 3 7 1, object 2 2 0, gripper 9". The whole
model (tower and language model) trains on image -> caption with the processor's chat template, loss
on the caption. Prints the caption digits' accuracy on held-out frames (chance ~10 %) and saves the
model with its processor.
"""

from __future__ import annotations

import argparse
import os
import random
import time

LEFT_OUT = "assembly-v3"  # the task benchmarks/nano_overfit.py fits

QUESTION = "Where are the hand and the object, and how open is the gripper?"


def caption(bins) -> str:
    return "hand {} {} {}, object {} {} {}, gripper {}".format(*bins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trajectories", type=int, default=80)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from progresslm.train.state_warmup import state_frames

    torch.manual_seed(0)
    rng = random.Random(0)
    started = time.perf_counter()
    build = os.path.join(os.environ.get("PROGRESSLM_HOME", "~/.cache/progresslm"), "sim-full-s0-v3")
    paths, targets, _ = state_frames(build, args.trajectories, rng, leave_out=[LEFT_OUT])
    values = np.array(targets)
    edges = [np.quantile(values[:, j], np.linspace(0.1, 0.9, 9)) for j in range(values.shape[1])]
    bins = np.stack([np.digitize(values[:, j], edges[j]) for j in range(values.shape[1])], axis=1)
    print(f"{len(paths)} frames re-simulated in {time.perf_counter() - started:.0f} s")

    processor = AutoProcessor.from_pretrained(args.model)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model)
    images = [Image.open(path).convert("RGB") for path in paths]
    marker = processor.tokenizer("<|im_start|>assistant\n")["input_ids"]

    def batch_of(indices, with_answer=True):
        texts = []
        for i in indices:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
            if with_answer:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": caption(bins[i])}]})
            texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=not with_answer))
        inputs = processor(text=texts, images=[images[i] for i in indices], return_tensors="pt", padding=True)
        labels = torch.full_like(inputs["input_ids"], -100)
        for row, ids in enumerate(inputs["input_ids"].tolist()):
            for start in range(len(ids) - len(marker), -1, -1):  # the reply follows the last assistant marker
                if ids[start : start + len(marker)] == marker:
                    break
            labels[row, start + len(marker) :] = inputs["input_ids"][row, start + len(marker) :]
        labels[inputs["attention_mask"] == 0] = -100
        return inputs, labels

    order = list(range(len(images)))
    rng.shuffle(order)
    test, train = order[:64], order[64:]

    def digit_accuracy() -> float:
        model.eval()
        right = total = 0
        with torch.no_grad():
            for start in range(0, len(test), 16):
                chunk = test[start : start + 16]
                inputs, labels = batch_of(chunk)
                predicted = model(**inputs).logits[:, :-1].argmax(-1)
                gold = labels[:, 1:]
                tokens = processor.tokenizer.convert_ids_to_tokens(gold[gold != -100].tolist())
                digit = torch.zeros_like(gold, dtype=torch.bool)
                digit[gold != -100] = torch.tensor([t.strip().isdigit() for t in tokens])
                right += int((predicted[digit] == gold[digit]).sum())
                total += int(digit.sum())
        model.train()
        return right / max(total, 1)

    print(f"held-out caption digits right before: {100 * digit_accuracy():.1f} %")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    model.train()
    for step in range(1, args.steps + 1):
        inputs, labels = batch_of(rng.sample(train, min(args.batch, len(train))))
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(
                f"step {step}: loss {loss.item():.3f}, held-out digits right {100 * digit_accuracy():.1f} %", flush=True
            )
    model.eval()
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"saved {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
