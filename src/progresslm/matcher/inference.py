"""A matcher checkpoint with its encoders and feature caches: samples in, `MatchResult`s out.

Used by the `matcher` backend, by `--hints matcher` (any backend's prompts) and by the training data
of nano. Image features are kept per file path and text vectors per string, so a demonstration's
keyframes are encoded once however many observations are asked against them: online, a frame costs
one observation's features plus the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from progresslm.matcher.encoders import TEXT_DIM, FeatureStore, ImageEncoder, TextEncoder
from progresslm.matcher.modeling_matcher import Matcher, MatchResult
from progresslm.types import Modality, Sample


def image_key(path: str | Path) -> str:
    return str(Path(path).resolve())


class MatcherRunner:
    """`MatcherRunner(folder).match(samples, image_root)` -> one `MatchResult` per sample (None for a
    text sample when the checkpoint has no text branch). `features`: a folder of cached features to
    read and extend (training stages share theirs); without it the cache lives in memory."""

    def __init__(self, folder: str | Path, device: str = "cpu", features: str | Path | None = None):
        self.folder = Path(folder)
        self.matcher = Matcher.load(self.folder)
        spec = self.matcher.config.image
        self.device = device
        cache = Path(features) if features else None
        self.images = FeatureStore(cache / spec.name if cache else None, spec.dim, spec.name)
        self.texts = FeatureStore(cache / "minilm-l6" if cache else None, TEXT_DIM, "minilm-l6")
        self._image_encoder: ImageEncoder | None = None
        self._text_encoder: TextEncoder | None = None

    @property
    def image_encoder(self) -> ImageEncoder:
        if self._image_encoder is None:
            self._image_encoder = ImageEncoder(self.matcher.config.image, device=self.device)
        return self._image_encoder

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = TextEncoder(device=self.device)
        return self._text_encoder

    def image_features(self, paths: Sequence[str | Path]) -> np.ndarray:
        keys = [image_key(p) for p in paths]
        return self.images.get(keys, lambda missing: self.image_encoder.encode_files(missing))

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        return self.texts.get([t.strip() for t in texts], lambda missing: self.text_encoder.encode(missing))

    def match(
        self,
        samples: Sequence[Sample],
        image_root: str | Path | None = None,
        paths: Sequence[Sequence[str | Path]] | None = None,
    ) -> list[MatchResult | None]:
        """Every image of `samples` encoded in batches first, then each sample matched. `paths`: each
        sample's image files (`Sample.image_names` order: keyframes, then the observation) where they
        are known already (a prompt's images); else they resolve against `image_root`."""
        if paths is None:
            paths = [[s.image_path(name, image_root) for name in s.image_names()] for s in samples]
        self.image_features([p for group in paths for p in group])
        texts = [t for s in samples if s.modality is Modality.TEXT for t in (s.goal, *s.demo.items)]
        if texts and self.matcher.config.text:
            self.text_features(texts)
        return [self.match_one(s, group) for s, group in zip(samples, paths)]

    def match_one(self, sample: Sample, paths: Sequence[str | Path]) -> MatchResult | None:
        """One sample whose image files are `paths` (keyframes, then the observation)."""
        features = self.image_features(paths)
        obs, demo = features[-1], sample.demo
        if demo.modality is Modality.VISUAL:
            return self.matcher.match_visual(obs, features[:-1], demo.progress_points())
        if not self.matcher.config.text:
            return None
        steps = self.text_features(list(demo.items))
        goal = self.text_features([sample.goal])[0]
        return self.matcher.match_text(obs, steps, goal, demo.total_steps)

    def save(self) -> None:
        self.images.save()
        self.texts.save()
