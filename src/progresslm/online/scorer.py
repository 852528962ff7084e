"""Score observations against one demonstration with any backend: the core of online use.

`ProgressScorer` holds a backend, a task goal and a demonstration (keyframe images or text
steps) and turns observation images (PIL images, arrays or files) into `Estimate`s: progress in
[0, 1] or None, the anchor, the raw reply and the latency. It builds the same prompt as
`progresslm eval` (`progresslm.prompts.build_prompt`), so a model behaves as it did in evaluation.
Images given in memory are written once to a private folder (every backend can read a file: the
`hf` / `nano` backends take PIL images, `openai` data URLs, `pixel-nn` and `retrieval` paths).

    scorer = ProgressScorer(goal="open the drawer", demo=["k0.jpg", "k1.jpg", "k2.jpg"])  # the default model
    estimates = scorer.score([frame])  # one Estimate per observation, in order
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from progresslm.ask import Item, ask
from progresslm.backends.base import Backend, BackendOptions
from progresslm.backends.registry import DEFAULT_BACKEND, create_backend
from progresslm.images import IMAGE_SUFFIXES, ImageReadError, ImageStore, hold, read_image, release
from progresslm.matcher.hints import HintError, HintProvider, check_source
from progresslm.parsing import parse_reply
from progresslm.prompts import build_prompt
from progresslm.types import Demo, Modality, Sample, Status


class ScorerError(ValueError):
    """Bad input to a scorer: says what and where."""


@dataclass(frozen=True)
class Estimate:
    """One observation's answer: `progress` in [0, 1] (None for N/A or an unreadable reply)."""

    progress: float | None
    status: Status
    anchor: int | None
    reply: str
    latency_s: float
    error: str | None = None

    @property
    def is_na(self) -> bool:
        return self.status is Status.NA

    @property
    def percent(self) -> float | None:
        """`progress` in percent (None for N/A)."""
        return None if self.progress is None else self.progress * 100

    def to_dict(self) -> dict:
        """The JSON form (`progresslm serve` answers, `watch`'s events.json): progress in **percent**, as the
        protocol and its files write it; the Python attributes are fractions."""
        return {
            "progress": None if self.progress is None else round(self.progress * 100, 2),
            "status": self.status.value,
            "anchor": self.anchor,
            "reply": self.reply,
            "latency_s": round(self.latency_s, 4),
            "error": self.error,
        }


def as_pil(image: Any, where: str):
    """A PIL RGB image from a PIL image, a file path, or an array or tensor: H x W x C (numpy, PIL, imageio) or
    C x H x W (torch, torchvision, LeRobot), C = 1, 3 or 4, H x W grey; uint8 values, or floats in [0, 1]
    (or [0, 255])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ScorerError(f"{where}: image file {path} does not exist")

        try:
            return read_image(path)
        except ImageReadError as error:
            reason = str(error).partition("cannot read image ")[2] or str(error)
            raise ScorerError(f"{where}: {path} is not a readable image {reason}") from None
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, on any device
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels first
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] < 2 or array.shape[1] < 2:
        raise ScorerError(f"{where}: expected an image array of H x W x C or C x H x W (C = 1, 3, 4), "
                          f"got shape {array.shape}")  # fmt: skip
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(array.max()) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]))


def _one_or_many(observations: Any) -> list:
    """`score`'s argument as a list: one image (a path, a PIL image, a 2-D or 3-D array or tensor) or several."""
    if isinstance(observations, (str, Path, Image.Image)):
        return [observations]
    ndim = getattr(observations, "ndim", None)
    if ndim is not None:
        return [observations] if ndim in (2, 3) else list(observations)
    return list(observations)


class ProgressScorer:
    """A backend, a goal and a demonstration; `score(observations)` returns one `Estimate` each.

    `demo`: keyframe images (PIL, arrays or paths; at least 2: the start and the end of each step)
    for a visual demonstration, or step descriptions (strings that are not image files) for a text one.
    `backend`: a registered backend name (built with `options`) or a `Backend` instance to share.
    Thread-safe: calls are serialised, so one model serves several callers in turn.
    """

    def __init__(
        self,
        goal: str,
        demo: Sequence[Any],
        backend: str | Backend | None = None,
        options: BackendOptions | None = None,
        mode: str = "two-stage",
        demo_kind: str | None = None,
        hints: str | None = None,
        hints_model: str | None = None,
    ):
        if not isinstance(goal, str) or not goal.strip():
            raise ScorerError("goal: give the task goal as a non-empty string")
        if not isinstance(demo, Sequence) or isinstance(demo, (str, bytes)) or len(demo) == 0:
            raise ScorerError("demo: give a list of keyframe images or of step descriptions")
        self.goal = goal.strip()
        self.mode = mode
        kind = demo_kind or self._demo_kind(demo)
        if kind not in ("visual", "text"):
            raise ScorerError(f"demo_kind: {kind!r} is not 'visual' or 'text'")
        # The backend first: when it cannot be built, no folder is left behind.
        backend = DEFAULT_BACKEND if backend is None else backend
        self.backend = backend if isinstance(backend, Backend) else create_backend(backend, options or BackendOptions(), mode)
        self._owns_backend = not isinstance(backend, Backend)
        self.hints = self._hint_provider(hints, hints_model)
        # frames live in memory under paths in this folder, which is never created (images.hold)
        self._folder = Path(tempfile.gettempdir()) / f"progresslm-scorer-{uuid.uuid4().hex}"
        self._held: set[Path] = set()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self.store = ImageStore()
        try:
            self._set_demo(demo, kind)
        except BaseException:
            self.close()
            raise

    def _set_demo(self, demo: Sequence[Any], kind: str) -> None:
        if kind == "text":
            steps = [str(step).strip() for step in demo]
            if any(not step for step in steps):
                raise ScorerError("demo: a text step is empty")
            self.demo = Demo(Modality.TEXT, tuple(steps), total_steps=len(steps))
        elif kind == "visual":
            if len(demo) < 2:
                raise ScorerError("demo: a visual demonstration needs at least 2 keyframes (start and end)")
            paths = [self._save(as_pil(image, f"demo[{i}]"), "demo") for i, image in enumerate(demo)]
            self.demo = Demo(Modality.VISUAL, tuple(str(p) for p in paths), total_steps=len(paths) - 1)

    def _hint_provider(self, hints: str | None, hints_model: str | None):
        """The matcher that writes the prompts' hints (the option, else the backend's default), or None."""
        source = hints if hints is not None else getattr(self.backend, "default_hints", None)
        if source in (None, "none"):
            return None

        try:
            check_source(source)
            return HintProvider(hints_model, device=getattr(self.backend.options, "device", "cpu"))
        except HintError as error:
            self.close()
            raise ScorerError(f"hints: {error}") from None

    @staticmethod
    def _demo_kind(demo: Sequence[Any]) -> str:
        def is_text(item) -> bool:
            return isinstance(item, str) and not (Path(item).suffix.lower() in IMAGE_SUFFIXES and Path(item).is_file())

        kinds = {is_text(item) for item in demo}
        if len(kinds) > 1:
            raise ScorerError("demo: mixes step descriptions and images; give one kind")
        return "text" if kinds == {True} else "visual"

    def _save(self, image, prefix: str) -> Path:
        """A path that stands for the in-memory image in this toolkit's image readers (`images.hold`): nothing is
        written. A backend of your own that takes paths (`image_format = "none"`) may open them itself, so for it
        the image is also written (uncompressed) and removed after its call."""
        path = self._folder / f"{prefix}_{next(self._counter):06d}.png"
        hold(path, image.convert("RGB"))
        self._held.add(path)
        if self._opens_paths:
            self._folder.mkdir(parents=True, exist_ok=True)
            image.save(path, compress_level=0)
        return path

    @property
    def _opens_paths(self) -> bool:
        backend = self.backend
        return getattr(backend, "image_format", "none") == "none" and not type(backend).__module__.startswith("progresslm.")

    def _drop(self, path: Path) -> None:
        release(path)
        path.unlink(missing_ok=True)
        self._held.discard(path)
        self.store.forget(path)

    def sample(self, observation_path: Path, uid: str) -> Sample:
        return Sample(uid=uid, trajectory_id="online", goal=self.goal, demo=self.demo,
                      observation=str(observation_path), progress=None, closest_idx=None, labelled=False)  # fmt: skip

    def score(self, observations: Any, draws: Sequence[int] | None = None) -> list[Estimate]:
        """One `Estimate` per observation, in order; the backend sees them as one batch. `observations`: one image
        (a path, a PIL image, an array or tensor, H x W x C or C x H x W) or a list of them, or an N x H x W x C
        (N x C x H x W) batch.

        `draws`: a draw index per observation (default 0). Backends seed each draw differently, so the
        same frame asked with draws 0, 1, 2 gives independent samples when the backend samples."""
        observations = _one_or_many(observations)
        if len(observations) == 0:
            return []
        draws = [0] * len(observations) if draws is None else [int(d) for d in draws]
        if len(draws) != len(observations):
            raise ScorerError(f"draws: {len(draws)} draw indices for {len(observations)} observations")
        pils = [as_pil(image, f"observation[{i}]") for i, image in enumerate(observations)]
        with self._lock:
            paths = []
            try:  # the frames are released whatever happens (a full queue, a failed backend): none piles up
                paths = [self._save(image, "obs") for image in pils]
                samples = [self.sample(path, uid=path.stem) for path in paths]
                lines = self.hints.hints(samples, None) if self.hints is not None else {}
                items = [Item(sample, build_prompt(sample, self.mode, None, hints=lines.get(sample.uid)), draw)
                         for sample, draw in zip(samples, draws)]  # fmt: skip
                started = time.perf_counter()
                replies = {(a.request.uid, a.request.draw): a.reply for a in ask(self.backend, items, self.store)}
                elapsed = time.perf_counter() - started
            finally:
                for path in paths:
                    self._drop(path)
        out = []
        for item in items:
            reply = replies.get((item.sample.uid, item.draw))
            if reply is None or reply.error:
                why = "no reply" if reply is None else reply.error
                out.append(Estimate(None, Status.PARSE_FAILURE, None, "", elapsed / len(items), why))
                continue
            prediction = parse_reply(reply.text, self.mode)
            latency = reply.latency_s or elapsed / len(items)
            out.append(Estimate(prediction.score if prediction.has_value else None, prediction.status,
                                prediction.ref, reply.text, latency))  # fmt: skip
        return out

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()
            self._owns_backend = False
        for path in list(self._held):
            self._drop(path)
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> ProgressScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
