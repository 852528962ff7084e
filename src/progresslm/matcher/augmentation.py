"""Photometric and geometric copies of an image for matcher training (issue 27): colour jitter, blur, crops and
zoom, small rotations, applied to the pixels before the frozen encoder, so each copy is its own feature row.

`augment_image(image, rng, strength)`: one copy drawn from `rng` (numpy Generator); `strength` in (0, 1] scales
every range (1: brightness, contrast and saturation x0.6-1.4, hue +-0.05 turns, blur up to 2 px in half the copies,
a crop keeping 40-100 % of the area at aspect 0.8-1.25, so up to 1.6x zoom, and rotations up to 10 degrees).
`view_seed(key, view, seed)`: the seed of copy `view` of the image `key`, so a feature cache of copies is the
same whatever order images arrive in.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def view_seed(key: str, view: int, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{view}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def augment_image(image: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    if not 0 < strength <= 1:
        raise ValueError(f"augmentation strength must be in (0, 1], got {strength}")
    im = image.convert("RGB")
    w, h = im.size
    # geometric: rotate a little (edges filled by the image's mean colour), then crop and resize back
    angle = rng.uniform(-10, 10) * strength
    mean = tuple(int(c) for c in np.asarray(im).reshape(-1, 3).mean(0))
    im = im.rotate(angle, resample=Image.BILINEAR, fillcolor=mean)
    area = rng.uniform(1 - 0.6 * strength, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)) * strength))
    cw = int(round(min(w, w * np.sqrt(area * aspect))))
    ch = int(round(min(h, h * np.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
    # photometric
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhance(im).enhance(float(rng.uniform(1 - 0.4 * strength, 1 + 0.4 * strength)))
    shift = rng.uniform(-0.05, 0.05) * strength
    if abs(shift) > 1e-4:
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256).astype(np.uint8)
        im = Image.fromarray(hsv, "HSV").convert("RGB")
    if rng.random() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.1, 2.0)) * strength))
    return im
