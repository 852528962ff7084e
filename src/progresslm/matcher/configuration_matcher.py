"""The matcher's settings (`MatcherConfig`, saved as the checkpoint's config.json) and its checkpoint error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from progresslm.matcher.encoders import ImageSpec, Tap

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
READOUTS = ("expected", "local")


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
    # Out-of-domain settings (issue 27); each default is the v1 behaviour, so an old config.json answers as before.
    # How the position is read from the anchor distribution: "expected" (the mean over every keyframe: far
    # keyframes pull it toward the middle) or "local" (the mean over the best keyframe and its two neighbours).
    readout: str = "expected"
    # Test-time keyframe check: an observation whose similarity to one keyframe is at least this (1.0: the same
    # features) reads that keyframe's progress exactly, as answerable. None: off.
    snap_similarity: float | None = None
    # Compare in the demonstration's own statistics: keyframe and observation features centred on the
    # keyframes' mean and scaled by their spread (per feature) before the similarity, and the N/A head also
    # reads the observation's distance to the demonstration relative to the keyframes' distances to each other.
    demo_norm: bool = False
    # The keyframes' known order as an N/A check: how far the similarity profile is from one peak that falls
    # off along the keyframe order (an observation of this task is most like one keyframe and its neighbours).
    order_check: bool = False
    # Text calibration (set by training with calibrate_text): the progress is shrunk toward 50 % by the factor
    # of the first bin whose upper edge the anchor distribution's peak weight is under: [[upper, factor], ...].
    text_shrink: list = field(default_factory=list)
    # A text answer whose peak weight is under this is N/A (abstain). None: off.
    text_abstain: float | None = None
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
        config = cls(**known)
        if config.readout not in READOUTS:
            raise ValueError(f"readout {config.readout!r} is not one of {', '.join(READOUTS)}")
        return config

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
