"""Image files read once and encoded once, in whatever form a backend asks for.

A benchmark reuses each demonstration keyframe for every observation of its trajectory, so the
store caches encoded images (bounded by bytes, least recently used out first).
"""

from __future__ import annotations

import base64
import io
import mimetypes
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # what a folder of frames or keyframes may hold

IMAGE_FORMATS = ("none", "data_url", "pil", "array")


class ImageReadError(ValueError):
    """An image file that cannot be read or decoded; the message names the file."""


_HELD: dict[str, Any] = {}  # str(path) -> a PIL RGB image that stands for a file no one wrote (`hold`)
_HELD_LOCK = threading.Lock()


def hold(path: Path, image) -> None:
    """Let `path` stand for `image` (PIL, RGB) in every reader of this module without writing a file: the online
    scorer's frames live in memory, under paths that never exist on disk. `release` ends it."""
    with _HELD_LOCK:
        _HELD[str(path)] = image


def release(path: Path) -> None:
    with _HELD_LOCK:
        _HELD.pop(str(path), None)


def held(path: str | Path):
    """The image held for `path`, or None."""
    with _HELD_LOCK:
        return _HELD.get(str(path))


def read_image(path: str | Path, mode: str = "RGB"):
    """An image file decoded completely, as a PIL image in `mode`: the one reader every part of the toolkit uses.
    A path `hold` registered gives its image without touching the disk.

    Any file that is not a whole, decodable image (unreadable, truncated, not an image, a decompression bomb
    over PIL's pixel limit) is an `ImageReadError` naming the file and the reason."""
    image = held(path)
    if image is not None:
        return image.convert(mode)
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def missing_images(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not files, each listed once, in first-seen order."""
    seen: set[Path] = set()
    missing = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            if not path.is_file():
                missing.append(path)
    return missing


def _image_mime(data: bytes, path: Path) -> str:
    """The MIME type of image bytes, after decoding them fully; ValueError when they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file passes `verify()` but fails here
            kind = image.format
    except (OSError, Image.DecompressionBombError, SyntaxError) as err:
        raise ValueError(f"not a decodable image ({type(err).__name__}: {err})") from None
    return Image.MIME.get(kind or "", None) or mimetypes.guess_type(path.name)[0] or "image/jpeg"


class ImageStore:
    """Encodes image files on first use and keeps the result (LRU, `max_bytes` in all)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, Path], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.reads = 0  # files read from disk; a test and a benchmark check it stays one per file

    def get(self, path: Path, image_format: str) -> Any:
        if image_format not in IMAGE_FORMATS or image_format == "none":
            raise ValueError(f"unknown image format {image_format!r}; valid: {', '.join(IMAGE_FORMATS[1:])}")
        key = (image_format, path)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit[0]
        value, size = self._encode(path, image_format)
        self._cache[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._cache) > 1:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._bytes -= dropped
        return value

    def forget(self, path: Path) -> None:
        """Drop every cached encoding of `path` (a streamed frame that will not be asked for again)."""
        for key in [key for key in self._cache if key[1] == path]:
            self._bytes -= self._cache.pop(key)[1]

    def encode_all(self, paths: Iterable[Path], image_format: str) -> tuple[Any, ...]:
        if image_format == "none":
            return ()
        return tuple(self.get(path, image_format) for path in paths)

    def _encode(self, path: Path, image_format: str) -> tuple[Any, int]:
        self.reads += 1

        try:
            return self._decode(path, image_format)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err

    def _decode(self, path: Path, image_format: str) -> tuple[Any, int]:
        image = held(path)
        if image is not None:
            return _encode_held(image, image_format)
        if image_format == "data_url":
            data = path.read_bytes()
            mime = _image_mime(data, path)  # the bytes must decode as an image: never send a text file as one
            url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            return url, len(url)

        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if image_format == "pil":
            return rgb, rgb.width * rgb.height * 3

        array = np.asarray(rgb, dtype=np.float32) / 255.0
        return array, array.nbytes


def _encode_held(image, image_format: str) -> tuple[Any, int]:
    """A held image in the form a backend asks (PNG bytes for a data URL)."""
    rgb = image.convert("RGB")
    if image_format == "data_url":
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        url = f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
        return url, len(url)
    if image_format == "pil":
        return rgb, rgb.width * rgb.height * 3

    array = np.asarray(rgb, dtype=np.float32) / 255.0
    return array, array.nbytes


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value.

    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name))


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder` (by suffix), in natural name order."""
    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(files, key=lambda p: natural_key(p.name))


MIN_SIDE = 8  # a frame smaller than this on either side shows nothing to score: one policy for every frame reader


def read_frame(path: Path):
    """One frame file as an H x W x 3 uint8 array; unreadable or degenerate (smaller than MIN_SIDE on a side) frames
    are an ImageReadError naming the file."""
    try:
        pixels = np.asarray(read_image(path))
    except ImageReadError as err:
        raise ImageReadError(str(err).replace("cannot read image", "not a readable image")) from None
    return check_frame(pixels, str(path))


def check_frame(pixels, where: str):
    """`pixels` (an H x W x C array) when a frame can be scored; one smaller than MIN_SIDE on a side is an
    ImageReadError "<where>: the frame is W x H pixels, too small to score". The one policy for tiny frames: files
    (read_frame) and every Episode reader (`data.episodes.Episode.read`) use it, so 1 x 1 and 2 x 2 frames are
    treated alike by the LeRobot, videos, frames and HDF5 readers.

    >>> import numpy as np; check_frame(np.zeros((8, 8, 3)), "f").shape
    (8, 8, 3)
    >>> check_frame(np.zeros((2, 2, 3)), "ep 0 frame 3")
    Traceback (most recent call last):
    ...
    progresslm.images.ImageReadError: ep 0 frame 3: the frame is 2 x 2 pixels, too small to score (at least 8 a side)
    """
    shape = getattr(pixels, "shape", ())
    if len(shape) < 2 or min(shape[:2]) < MIN_SIDE:
        size = f"{shape[1]} x {shape[0]}" if len(shape) >= 2 else "not an image:"
        raise ImageReadError(f"{where}: the frame is {size} pixels, too small to score (at least {MIN_SIDE} a side)")
    return pixels
