"""The layer table of docs/architecture.md holds: no import goes up a layer (top-level or inside a function) unless
the table's Exceptions list it with a reason, and the package-level graph has no cycle."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from tests.structure.imports import cycles, graph

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
MAX_EXCEPTIONS = 3


def _table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after `heading`."""
    text = ARCHITECTURE.read_text()
    section = text[text.index(heading):]
    rows, started = [], False
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif started or line.startswith("#"):
            break
    return rows[1:]  # without the header


def layers() -> list[tuple[str, list[str]]]:
    """(layer name, path patterns relative to the package) from the bottom: a backticked folder stands for its files."""
    found = []
    for name, modules, *_ in _table("## The package map"):
        paths = re.findall(r"`([^`]+\.py|[^`]+/)`", modules)
        found.append((name, [p + "*" if p.endswith("/") else p for p in paths]))
    return found


def exceptions() -> set[tuple[str, str]]:
    """(importer, imported) module names the table allows to go up, each with its reason."""
    allowed = set()
    for importer, imported, why, *_ in _table("### Exceptions"):
        assert why.strip(), f"the exception {importer} -> {imported} gives no reason"
        allowed.add((importer.strip("` "), imported.strip("` ")))
    return allowed


def _path(module: str) -> list[str]:
    rel = module.split(".", 1)[1].replace(".", "/") if "." in module else ""
    return [rel + ".py", rel + "/__init__.py"] if rel else ["__init__.py"]


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    matches = [i for i, (_, patterns) in enumerate(table)
               if any(fnmatch.fnmatch(p, pattern) for p in _path(module) for pattern in patterns)]  # fmt: skip
    return matches[0] if len(matches) == 1 else None


def upward(edges: dict[str, set[str]], table, allowed) -> list[str]:
    found = []
    for importer, imported in sorted((a, b) for a, bs in edges.items() for b in bs):
        low, high = layer_of(importer, table), layer_of(imported, table)
        if high > low and (importer, imported) not in allowed:
            found.append(f"{importer} ({table[low][0]}) imports {imported} ({table[high][0]})")
    return found


def test_every_module_sits_in_exactly_one_layer():
    table = layers()
    assert len(table) >= 10
    assert [m for m in graph() if layer_of(m, table) is None] == []


def test_no_import_goes_up_a_layer_outside_the_listed_exceptions():
    allowed = exceptions()
    assert len(allowed) <= MAX_EXCEPTIONS
    assert upward(graph(), layers(), allowed) == []


def test_the_check_finds_an_import_that_goes_up():
    edges = graph()
    edges["progresslm.metrics"] = {*edges["progresslm.metrics"], "progresslm.evaluation"}  # protocol -> evaluation
    found = upward(edges, layers(), exceptions())
    assert found == ["progresslm.metrics (protocol) imports progresslm.evaluation (evaluation)"]


def test_the_package_level_graph_has_no_cycle():
    """Folders (and top-level modules) as nodes: `progresslm.sim.sim_build -> progresslm.data.video` is sim -> data."""
    packages: dict[str, set[str]] = {}
    for importer, imported in ((a, b) for a, bs in graph().items() for b in bs):
        a, b = (importer.split(".") + [""])[1], (imported.split(".") + [""])[1]
        if a != b:
            packages.setdefault(a, set()).add(b)
    assert len(packages) > 15 and cycles(packages) == []
