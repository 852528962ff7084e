"""Prompt building is linear in the demonstration's length (it was quadratic: 80,000 steps took 5.5 s)."""

from __future__ import annotations

import threading

from progresslm.prompts import build_prompt, render_text
from progresslm.types import Demo, Modality, Sample


def test_a_demonstration_of_many_steps_builds_quickly_and_completely():
    steps = tuple(f"move the block a little further, part {i}" for i in range(200_000))
    sample = Sample("u", "t", "stack", Demo(Modality.TEXT, steps, len(steps)), "o.jpg", None, None)
    built = []
    worker = threading.Thread(target=lambda: built.append(build_prompt(sample, "two-stage")), daemon=True)
    worker.start()
    worker.join(timeout=60)  # quadratic string appends take minutes here; the linear builder well under a second
    assert not worker.is_alive()
    text = render_text(built[0])
    assert text.count("\nStep ") == len(steps) and "Step 200000: move the block a little further, part 199999" in text
