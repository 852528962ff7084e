"""`matcher`: the project's learned episodic-retrieval model (`progresslm.matcher.modeling_matcher`), shipped in the package.

It compares the observation with every keyframe (or, for a text demonstration, every step) in a
learned embedding space over frozen pretrained encoders, reads the anchor and progress from the
similarity profile and says N/A when its mismatch head fires. Replies are in the requested mode, with
the profile written into the reasoning tags. `--model DIR` points it at another matcher checkpoint
(`progresslm train matcher --out DIR`). Features are cached per image file and per text, so each
demonstration is encoded once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request
from progresslm.checkpoints import CheckpointError, weights_id
from progresslm.matcher import matcher_dir
from progresslm.matcher.encoders import EncoderError
from progresslm.matcher.inference import MatcherRunner
from progresslm.matcher.modeling_matcher import MatcherError
from progresslm.prompts import percent


class MatcherBackend(Backend):
    image_format = "none"  # it reads the files itself and keeps one feature per file
    reads_images = True
    chunk_size = 256  # a chunk's new images are encoded together, in batches

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)

        try:
            self.folder = Path(options.model) if options.model else matcher_dir()
            self.runner = MatcherRunner(self.folder, device=options.device)
        except (CheckpointError, MatcherError, EncoderError, OSError) as err:
            raise BackendError(f"matcher: {err}") from None

    @property
    def model_name(self) -> str:
        return f"progresslm-matcher@{weights_id(self.folder)}"

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        start = time.perf_counter()
        try:
            results = self.runner.match([r.sample for r in requests], paths=[r.prompt.images for r in requests])
        except EncoderError as err:
            raise BackendError(f"matcher: {err}") from None
        each = (time.perf_counter() - start) / max(len(requests), 1)
        for index, (request, result) in enumerate(zip(requests, results)):
            yield index, Reply(text=self.reply(request, result), latency_s=each)

    def reply(self, request: Request, result) -> str:
        text = request.sample.demo.modality.value == "text"
        unit = "step" if text else "keyframe"
        if result is None:
            why = "This matcher has no text branch, so it cannot compare the observation with the steps."
            return "n/a" if self.mode == "direct" else _two_stage("n/a", why, "n/a", why)
        if result.na:
            why = (
                f"The mismatch head gives {result.p_na:.2f}, above its threshold: the observation does not fit "
                f"this demonstration."
            )
            return "n/a" if self.mode == "direct" else _two_stage("n/a", why, "n/a", why)
        score = percent(result.progress)
        if self.mode == "direct":
            return score
        sims = result.similarities[1:] if text else result.similarities
        listed = ", ".join(f"{i + 1}: {s:.2f}" for i, s in enumerate(sims))
        ref_why = f"Similarity of the observation to each {unit}: {listed}. The closest is {unit} {result.anchor}."
        score_why = (
            f"The expected position on the {unit} timeline is {result.position + (0 if text else 1):.2f} "
            f"(mismatch {result.p_na:.2f}), which is {score} of the task."
        )
        return _two_stage(str(result.anchor), ref_why, score, score_why)

    def close(self) -> None:
        self.runner = None


def _two_stage(ref: str, ref_why: str, score: str, score_why: str) -> str:
    return (
        f"<ref_think>{ref_why}</ref_think><ref>{ref}</ref>"
        f"<score_think>{score_why}</score_think><score>{score}</score>"
    )

