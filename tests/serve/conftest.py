"""Test clients over the cheap backends (FastAPI's TestClient: no network)."""

from __future__ import annotations

import pytest

from tests.serve.payloads import make_client


@pytest.fixture
def client():
    pytest.importorskip("fastapi")  # the serve extra; test modules that need it skip themselves
    with make_client("constant") as test_client:
        yield test_client


@pytest.fixture
def pixel_client():
    pytest.importorskip("fastapi")
    with make_client("pixel-nn") as test_client:
        yield test_client
