"""Shipped checkpoints: a clear error when one is missing, and a digest that names their weights.

A run's identity carries the digest (`progresslm-matcher@1a2b3c4d`), so replies saved with one
release of a model are never reused for another.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"


class CheckpointError(RuntimeError):
    """A shipped checkpoint missing from this install; the message says how to get it."""


def shipped(folder: Path, what: str) -> Path:
    """`folder` when it holds weights; a clear error when this install lacks them."""
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{what} is not in this install ({folder} has no {WEIGHTS_FILE}); reinstall progresslm, "
            "or train it with `make nano` and pass --model DIR"
        )
    return folder


@functools.cache
def _digest(path: Path, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def weights_id(folder: str | Path) -> str:
    """The first 8 hex digits of the sha256 of `folder/model.safetensors` (cached per file version)."""
    path = Path(folder).resolve() / WEIGHTS_FILE
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime)
