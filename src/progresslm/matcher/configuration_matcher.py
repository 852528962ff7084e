"""The matcher's settings (`MatcherConfig`, saved as the checkpoint's config.json) and its checkpoint error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from progresslm.matcher.encoders import ImageSpec, Tap

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class MatcherError(RuntimeError):
    """A matcher checkpoint that cannot be used; the message names the folder and what to do."""


@dataclass
class MatcherConfig:
    image: ImageSpec = field(default_factory=ImageSpec)
    embed_dim: int = 256
    cell_dim: int = 48  # per-cell projection the N/A head compares cells in
    task_dim: int = 64  # "same task?" embedding (view-invariant), trained contrastively, read by the N/A head
    na_hidden: int = 64
    dropout: float = 0.1  # on the input features while training
    # How an observation is compared with a keyframe: "global" (one embedding of the whole cell grid),
    # "late" (each cell finds its best partner among the other image's cells, averaged both ways: robust
    # to objects and cameras that moved), or "both" (the mean of the two cosines).
    similarity: str = "global"
    match_cell_dim: int = 64
    text: bool = True  # a text branch (needs the sentence encoder)
    na_threshold: float = 0.5  # N/A when the head's probability is above this (set by training)
    text_na_threshold: float = 0.5
    version: str = "1"
    made_from: dict = field(default_factory=dict)  # what training wrote: data, steps, selection figures

    def to_dict(self) -> dict:
        data = asdict(self)
        data["image"] = self.image.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MatcherConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["image"] = ImageSpec.from_dict(data["image"])
        return cls(**known)

    @property
    def cell_tap(self) -> Tap | None:
        """The first tap with a grid of cells (late-interaction matching reads it), None if all are global."""
        return next((tap for tap in self.image.taps if tap.cells > 1), None)

    @property
    def na_tap(self) -> Tap | None:
        """The last tap with a grid of cells (the N/A head compares those cells), None if all are global."""
        return next((tap for tap in reversed(self.image.taps) if tap.cells > 1), None)

    def tap_slice(self, tap: Tap) -> slice:
        start = sum(t.dim for t in self.image.taps[: self.image.taps.index(tap)])
        return slice(start, start + tap.dim)

    @property
    def global_dim(self) -> int:
        """Size of the global (1 x 1) taps, which the task embedding reads; 0 when there are none."""
        return sum(t.dim for t in self.image.taps if t.cells == 1)
