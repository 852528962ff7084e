"""Images as requests carry them, and test clients over the cheap backends."""

from __future__ import annotations

import base64
import io


def png_bytes(level: int, size: int = 32, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (level, level, level)).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(level: int, size: int = 32) -> str:
    return base64.b64encode(png_bytes(level, size)).decode("ascii")


def data_url(level: int, size: int = 32) -> str:
    return f"data:image/png;base64,{b64(level, size)}"


def make_client(backend: str = "constant", **config):
    from fastapi.testclient import TestClient

    from progresslm.serve import ServeConfig, create_app

    return TestClient(create_app(ServeConfig(backend=backend, **config)))
