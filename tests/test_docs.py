"""The examples of docs/python.md run as written (doctest), in a temporary folder."""

from __future__ import annotations

import doctest
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_python_api_guide_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    from progresslm.backends import registry

    before = dict(registry.BACKENDS)
    try:
        result = doctest.testfile(str(DOCS / "python.md"), module_relative=False, globs={"tmp": tmp_path},
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)  # fmt: skip
    finally:
        registry.BACKENDS.clear()
        registry.BACKENDS.update(before)
        registry._CLASSES.clear()
    assert result.attempted >= 12
    assert result.failed == 0
