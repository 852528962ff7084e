"""Each concept has one home: thin command-line modules, one definition of each shared constant and helper."""

from __future__ import annotations

import ast

from tests.structure.imports import PACKAGE

CLI_MAX_LINES = 250


def _definitions() -> dict[str, list[str]]:
    """Top-level name -> the modules that define it (functions, classes and assigned constants)."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                found.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    return found


def test_command_line_modules_only_parse_and_call():
    long = {p.name: n for p in (PACKAGE / "cli").glob("*.py") if (n := len(p.read_text().splitlines())) > CLI_MAX_LINES}
    assert long == {}


def test_shared_names_are_defined_once():
    found = _definitions()
    shared = ["MODES", "IMAGE_SUFFIXES", "ANSWERABLE_SPLITS", "is_number", "_is_number", "expand_files",
              "expand_path", "selection_score", "task_of", "slug", "_slug", "load_traces", "load_model",
              "load_processor", "check_trl_overrides"]  # fmt: skip
    repeated = {name: found[name] for name in shared if len(found.get(name, [])) > 1}
    assert repeated == {}
    assert all(name in found for name in ("MODES", "IMAGE_SUFFIXES", "is_number", "expand_files", "task_of"))


def test_writes_that_must_be_atomic_use_the_one_helper():
    """A temporary file renamed over its target is written by `progresslm.io` only."""
    offenders = [
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if p.name != "io.py" and ('.tmp"' in p.read_text() or ".partial" in p.read_text())
    ]  # fmt: skip
    assert offenders == []
