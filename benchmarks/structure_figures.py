"""Structure figures of the package (issue 24), read from the source (nothing is imported): internal imports inside
functions against all internal imports, package-level cycles, imports that go up a layer of docs/architecture.md's
table, and how many folders each default model's files span.

    python benchmarks/structure_figures.py                # this checkout
    python benchmarks/structure_figures.py --root /tmp/old --list   # another checkout; list every function-level import

An internal import is one `import progresslm...` / `from progresslm... import ...` statement (relative ones too),
outside `if TYPE_CHECKING:`; "inside a function" means anywhere in a function's body. A function-level import with a
comment on its line or the line above counts as explained (the reason it stays lazy)."""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def internal_imports(path: Path) -> list[tuple[int, bool, str]]:
    """(line, inside a function, module text) of each internal import statement in `path`."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "progresslm" or alias.name.startswith("progresslm."):
                    found.append((node.lineno, in_function, alias.name))
                    break
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module == "progresslm" or module.startswith("progresslm."):
                found.append((node.lineno, in_function, "." * node.level + module))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def explained(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line or the line above it (a `try:  # why` counts)."""
    return "#" in lines[lineno - 1] or (lineno >= 2 and "#" in lines[lineno - 2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="a checkout (default: this)")
    parser.add_argument("--list", action="store_true", help="list every function-level internal import")
    parser.add_argument("--skip", nargs="*", default=[], metavar="DIR",
                        help="folders under src/progresslm left out of the listing (not of the counts)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    package = root / "src" / "progresslm"
    total = inside = unexplained = 0
    by_folder: Counter[str] = Counter()
    listing = []
    for path in sorted(p for p in package.rglob("*.py") if "weights" not in p.parts):
        rel = path.relative_to(package).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno, in_function, module in internal_imports(path):
            total += 1
            if in_function:
                inside += 1
                folder = rel.split("/")[0] if "/" in rel else "(top level)"
                by_folder[folder] += 1
                why = explained(lines, lineno)
                unexplained += not why
                if args.list and not any(rel.startswith(s.rstrip("/") + "/") for s in args.skip):
                    listing.append(f"  {rel}:{lineno} {module}{'' if why else '  (no comment)'}")
    print(f"internal imports inside functions: {inside} of {total} ({inside - unexplained} with a comment)")
    print("  by folder: " + ", ".join(f"{k} {v}" for k, v in sorted(by_folder.items(), key=lambda kv: -kv[1])))
    if args.list:
        print("\n".join(listing))
    # This checkout's graph walk and table reader, pointed at the other checkout's package and docs.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.structure import imports, test_layers

    imports.PACKAGE = package
    test_layers.ARCHITECTURE = root / "docs" / "architecture.md"
    edges = imports.graph()
    packages: dict[str, set[str]] = {}
    for a, bs in edges.items():
        for b in bs:
            pa, pb = (a.split(".") + [""])[1], (b.split(".") + [""])[1]
            if pa != pb:
                packages.setdefault(pa, set()).add(pb)
    print(f"module cycles: {len(imports.cycles(edges))}; package-level cycles: {imports.cycles(packages)}")
    table = test_layers.layers()
    try:
        allowed = test_layers.exceptions()
    except ValueError:  # no Exceptions table (before issue 24: two exceptions in prose)
        allowed = set()
    unplaced = sorted(m for m in edges if test_layers.layer_of(m, table) is None)
    up = []
    for a, bs in sorted(edges.items()):
        for b in sorted(bs):
            low, high = test_layers.layer_of(a, table), test_layers.layer_of(b, table)
            if low is not None and high is not None and high > low and (a, b) not in allowed:
                up.append(f"{a} ({table[low][0]}) -> {b} ({table[high][0]})")
    print(f"module imports up a layer of the table outside its Exceptions table: {len(up)} "
          f"(Exceptions listed: {len(allowed)}; modules the table does not place: {len(unplaced)})")
    if args.list:
        print("\n".join(f"  {line}" for line in up))
    return 0


if __name__ == "__main__":
    sys.exit(main())
