"""Images that arrive inside requests: base64 or data URLs in, checked, out as a backend wants them.

The server never reads a file or fetches a URL named by a request: an image is its bytes, carried
in the request. Each is checked before any model sees it (valid base64, an image format PIL reads,
at most `max_pixels` pixels, read from the header before the pixels are decoded).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from progresslm.io import write_bytes_atomic
from progresslm.serve.errors import ApiError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)
_WHITESPACE = re.compile(r"\s+")
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


class PixelBudget:
    """Decoded pixels a request may hold (`max_request`: 413 above) and all requests together (`max_inflight`:
    429 above): a few small requests of huge solid PNGs must not take gigabytes. Counted from each image's
    header, before its pixels are decoded; `request()` gives the counter one request releases when done."""

    def __init__(self, max_request: int, max_inflight: int):
        self.max_request, self.max_inflight = max_request, max_inflight
        self.inflight = 0
        self._lock = threading.Lock()

    def request(self) -> RequestPixels:
        return RequestPixels(self)


class RequestPixels:
    def __init__(self, budget: PixelBudget):
        self.budget, self.taken = budget, 0

    def take(self, pixels: int, where: str) -> None:
        budget = self.budget
        if self.taken + pixels > budget.max_request:
            raise ApiError(413, f"the images of this request hold more than {budget.max_request} pixels "
                           "(--max-request-pixels); send fewer or smaller images", where, "too_many_pixels")  # fmt: skip
        with budget._lock:
            if budget.inflight + pixels > budget.max_inflight:
                raise ApiError(429, f"the server is decoding {budget.inflight} pixels for other requests, its limit is "
                               f"{budget.max_inflight} (--max-inflight-pixels); retry shortly", where, "pixels_busy")  # fmt: skip
            budget.inflight += pixels
        self.taken += pixels

    def release(self) -> None:
        with self.budget._lock:
            self.budget.inflight -= self.taken
        self.taken = 0

    def __enter__(self) -> RequestPixels:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class Upload:
    """One image from a request: its bytes as sent, PIL's name for its format, its size, and its pixels,
    decoded once at the boundary (at most `work_side` on the longest side)."""

    data: bytes
    format: str
    width: int
    height: int
    decoded: Any = field(default=None, compare=False, repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def mime(self) -> str:
        return f"image/{self.format.lower()}"

    def pil(self):
        """The image as RGB (a copy of the pixels decoded when the request was read)."""
        if self.decoded is not None:
            return self.decoded.copy()

        with Image.open(io.BytesIO(self.data)) as image:
            return image.convert("RGB")

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def refuse_reference(text: str, where: str, paths: bool = False) -> None:
    """A 400 for a string that names an image somewhere else (a URL, or with `paths` a file path)
    instead of carrying it."""
    head = text[:16].lower()
    url = head.startswith(("http://", "https://", "file:", "ftp://", "s3://", "gs://"))
    if url or (paths and (text.startswith(("/", "~", "./", "../")) or "\\" in text[:260] or "." in text[-6:])):
        raise ApiError(
            400,
            f"{text[:60]!r} names an image elsewhere; send the image itself as a data: URL "
            "(data:image/png;base64,...) or base64 — the server never fetches URLs or reads files",
            where,
            "image_not_inline",
        )


def decode_data_url(url: Any, where: str, max_pixels: int, pixels: RequestPixels | None = None,
                    work_side: int = 1024) -> Upload:  # fmt: skip
    """An `image_url.url`: only `data:<mime>;base64,<data>` is taken."""
    if not isinstance(url, str):
        raise ApiError(400, f"expected a data: URL string, got {type(url).__name__}", where, "bad_image")
    refuse_reference(url, where)
    match = _DATA_URL.match(url[:200])
    if not match:
        raise ApiError(400, "expected a data: URL like data:image/png;base64,<base64 data>", where, "bad_image")
    if not match.group("b64"):
        raise ApiError(400, "the data: URL must be base64-encoded (data:image/png;base64,...)", where, "bad_image")
    return decode_base64(url[match.end():], where, max_pixels, pixels, work_side)


def decode_image_string(text: Any, where: str, max_pixels: int, pixels: RequestPixels | None = None,
                        work_side: int = 1024) -> Upload:  # fmt: skip
    """An image given in a JSON field: a data: URL or bare base64."""
    if not isinstance(text, str):
        raise ApiError(400, f"expected an image as a base64 string or data: URL, got {type(text).__name__}", where, "bad_image")
    if text[:5].lower() == "data:":
        return decode_data_url(text, where, max_pixels, pixels, work_side)
    refuse_reference(text, where)
    try:
        return decode_base64(text, where, max_pixels, pixels, work_side)
    except ApiError as error:
        if error.code == "bad_base64":
            refuse_reference(text, where, paths=True)  # say so if it was a path ("/9j/..." is JPEG base64)
        raise


def decode_base64(text: str, where: str, max_pixels: int, pixels: RequestPixels | None = None,
                  work_side: int = 1024) -> Upload:  # fmt: skip
    cleaned = _WHITESPACE.sub("", text)
    if not cleaned:
        raise ApiError(400, "the image data is empty", where, "bad_image")
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, f"not valid base64 ({error})", where, "bad_base64") from None
    return check_image(data, where, max_pixels, pixels, work_side)


def check_image(data: bytes, where: str, max_pixels: int, pixels: RequestPixels | None = None,
                work_side: int = 1024) -> Upload:  # fmt: skip
    """The bytes as an `Upload` if PIL decodes them completely and they hold at most `max_pixels` pixels.

    The header is read first (size limits, the request's pixel budget) and only then the pixels, down to
    `work_side` on the longest side: JPEG is decoded at that scale directly (`Image.draft`), other formats
    are reduced right after decoding. A truncated file passes PIL's `verify()` but fails here, so every
    endpoint answers 400 `bad_image` for it, never a 500 from inside a model."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height, kind = image.width, image.height, image.format or "PNG"
            if width < 1 or height < 1:
                raise ApiError(400, f"the image is {width} x {height} pixels", where, "bad_image")
            if width * height > max_pixels:
                raise ApiError(
                    400,
                    f"the image is {width} x {height} = {width * height} pixels, more than this server's "
                    f"limit of {max_pixels} (--max-image-pixels); send a smaller image",
                    where,
                    "image_too_large",
                )
            if pixels is not None:
                pixels.take(width * height, where)
            if kind == "JPEG" and max(width, height) > work_side:
                image.draft("RGB", (work_side, work_side))
            image.load()
            decoded = image.convert("RGB")
    except ApiError:
        raise
    except Image.UnidentifiedImageError:
        raise ApiError(400, "not an image PIL can read (send PNG, JPEG or WebP bytes)", where, "bad_image") from None
    except Exception as error:  # PIL raises many kinds for bad bytes; all mean "not an image"
        raise ApiError(400, f"not a readable image ({type(error).__name__}: {error})", where, "bad_image") from None
    if max(decoded.size) > work_side:
        decoded.thumbnail((work_side, work_side), Image.BICUBIC)
    return Upload(data, kind, width, height, decoded)


def encode_for(upload: Upload, image_format: str) -> Any:
    """The image in a backend's `image_format`: PIL (hf, nano), a data URL (openai, vllm) or an array."""
    if image_format == "pil":
        return upload.pil()
    if image_format == "data_url":
        return upload.data_url()
    if image_format == "array":
        return np.asarray(upload.pil(), dtype=np.float32) / 255.0
    raise ValueError(f"image format {image_format!r} carries no image")


class ImageFiles:
    """Request images written to a private folder for backends that read files themselves (pixel-nn,
    retrieval). Named by content, so one image sent twice is one file (and one cache entry in the
    backend); counted, so a file is removed when the last request using it is done."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="progresslm-serve-"))
        self._uses: dict[Path, int] = {}
        self._lock = threading.Lock()

    def acquire(self, upload: Upload) -> Path:
        path = self.folder / f"{upload.digest[:32]}{SUFFIXES.get(upload.format, '.img')}"
        with self._lock:
            if path not in self._uses:
                write_bytes_atomic(path, upload.data)
            self._uses[path] = self._uses.get(path, 0) + 1
        return path

    def release(self, paths: list[Path]) -> None:
        with self._lock:
            for path in paths:
                left = self._uses.get(path, 0) - 1
                if left > 0:
                    self._uses[path] = left
                else:
                    self._uses.pop(path, None)
                    path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._uses)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
