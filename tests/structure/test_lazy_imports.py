"""Imports sit at the top of files (docs/architecture.md, issue 24); one left inside a function says why it is lazy.

Every import statement inside a function body in src/progresslm carries a `# lazy: <why>` comment: on one of its own
lines, or on the comment lines right above it (a `try:  # lazy: ...` opening its block counts too). One comment per
function is enough: when the function's first import carries it, it covers the function's other imports (nested
functions are functions of their own). Read from the source; nothing is imported."""

from __future__ import annotations

import ast

from tests.structure.imports import PACKAGE

MARK = "# lazy:"

# Files whose unmarked function-level imports are allowed (none: every one is hoisted or says why it is lazy). An
# entry whose file has nothing left to allow fails the test.
ALLOWED: set[str] = set()


def _marked(lines: list[str], node: ast.stmt) -> bool:
    """`# lazy:` on one of the statement's lines, on the comment lines right above it, or on the `try:` line just
    above it."""
    if any(MARK in line for line in lines[node.lineno - 1 : node.end_lineno]):
        return True
    i = node.lineno - 2
    if i >= 0 and lines[i].strip().startswith("try:") and MARK in lines[i]:
        return True
    while i >= 0 and lines[i].strip().startswith("#"):
        if MARK in lines[i]:
            return True
        i -= 1
    return False


def _own_imports(function: ast.AST) -> list[ast.stmt]:
    """The import statements in `function`'s body, outside the functions nested in it, in line order."""
    found = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(function)
    return sorted(found, key=lambda n: n.lineno)


def unmarked(source: str) -> list[int]:
    """Lines of the function-level imports in `source` that no `# lazy:` comment explains."""
    lines = source.splitlines()
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            imports = _own_imports(node)
            if imports and not _marked(lines, imports[0]):
                bad.extend(n.lineno for n in imports if not _marked(lines, n))
    return sorted(bad)


def offenders() -> dict[str, list[int]]:
    """Package file (relative to src/progresslm) -> lines of its unexplained function-level imports."""
    found = {}
    for path in sorted(p for p in PACKAGE.rglob("*.py") if "weights" not in p.parts):
        lines = unmarked(path.read_text(encoding="utf-8"))
        if lines:
            found[path.relative_to(PACKAGE).as_posix()] = lines
    return found


def test_every_function_level_import_says_why_it_is_lazy():
    found = offenders()
    listed = [f"src/progresslm/{rel}:{line}" for rel, lines in found.items() if rel not in ALLOWED for line in lines]
    assert listed == [], (
        f"{len(listed)} import(s) inside functions without a '{MARK} <why>' comment: hoist each to the top of its "
        "file, or (an optional extra's package, or one that would slow `progresslm --help`) say why:\n  "
        + "\n  ".join(listed)
    )


def test_the_allow_list_holds_only_files_that_need_it():
    found = offenders()
    stale = sorted(rel for rel in ALLOWED if rel not in found)
    assert stale == [], f"nothing left to allow in {stale}: remove them from ALLOWED"


def test_the_check_sees_an_unexplained_import():
    source = (
        "import os\n"
        "def bare():\n"
        "    import json\n"
        "    return json\n"
        "def marked():\n"
        "    import torch  # lazy: the [nano] extra\n"
        "    from torch import nn\n"
        "    return torch, nn\n"
        "def above():\n"
        "    # lazy: the [data] extra\n"
        "    import pyarrow\n"
        "    return pyarrow\n"
        "def second_only():\n"
        "    import re\n"
        "    import h5py  # lazy: the [data] extra\n"
        "    return re, h5py\n"
        "def guarded():\n"
        "    try:  # lazy: the [serve] extra\n"
        "        import fastapi\n"
        "    except ImportError:\n"
        "        fastapi = None\n"
        "    def inner():\n"
        "        import yaml\n"
        "        return yaml\n"
        "    return fastapi, inner\n"
        "def comment_far_above():\n"
        "    # lazy: not right above the import\n"
        "    x = 1\n"
        "    import csv\n"
        "    return x, csv\n"
    )
    assert unmarked(source) == [3, 14, 23, 29]
