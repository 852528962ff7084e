"""`pixel-nn`: the nearest demonstration keyframe by pixel distance, its progress as the answer.

A shortcut baseline: it uses the demonstration but understands nothing. A benchmark on which it
scores well rewards pixel matching rather than progress reasoning. Text demonstrations have no
keyframes to match, so it answers n/a for them (AFRR 100 on the text split, by construction).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from progresslm.backends.base import Backend, BackendOptions, Reply, Request
from progresslm.images import read_image
from progresslm.prompts import percent
from progresslm.types import Modality

THUMB = 32  # side of the downscaled grey image compared; small enough to blur away noise


class PixelNNBackend(Backend):
    image_format = "none"  # it reads and downscales the files itself, once per file
    reads_images = True
    chunk_size = 256

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)
        self._thumbs: dict[Path, np.ndarray] = {}

    @property
    def model_name(self) -> str:
        return "pixel-nn"

    def _thumb(self, path: Path) -> np.ndarray:
        thumb = self._thumbs.get(path)
        if thumb is None:
            small = read_image(path, "L").resize((THUMB, THUMB), Image.BILINEAR)
            thumb = np.asarray(small, dtype=np.float32) / 255.0
            self._thumbs[path] = thumb
        return thumb

    def answer(self, request: Request) -> str:
        demo = request.sample.demo
        if demo.modality is Modality.TEXT:
            return "n/a" if self.mode == "direct" else _two_stage("n/a", "n/a", "text demonstration: no keyframes to match")
        *keyframes, observation = request.prompt.images
        obs = self._thumb(observation)
        distances = [float(np.mean((self._thumb(path) - obs) ** 2)) for path in keyframes]
        best = int(np.argmin(distances))
        score = percent(demo.progress_at(best))
        if self.mode == "direct":
            return score
        return _two_stage(str(best + 1), score, f"keyframe {best + 1} is nearest in pixels (mse {distances[best]:.4f})")

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        for index, request in enumerate(requests):
            start = time.perf_counter()
            text = self.answer(request)
            yield index, Reply(text=text, latency_s=time.perf_counter() - start)


def _two_stage(ref: str, score: str, why: str) -> str:
    return f"<ref_think>{why}</ref_think><ref>{ref}</ref><score_think>{why}</score_think><score>{score}</score>"
