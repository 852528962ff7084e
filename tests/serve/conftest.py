"""Test clients over the cheap backends (FastAPI's TestClient: no network)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.serve.payloads import make_client  # noqa: E402


@pytest.fixture
def client():
    with make_client("constant") as test_client:
        yield test_client


@pytest.fixture
def pixel_client():
    with make_client("pixel-nn") as test_client:
        yield test_client
