"""pytest collects doctests from src/ too (pyproject's testpaths and --doctest-modules). A module
that imports an optional extra at its top is left out of that collection when the extra is not
installed, instead of failing the whole run; its tests under tests/ skip themselves."""

from __future__ import annotations

import importlib.util

# module -> the packages it imports at its top (the extra that brings them)
_NEEDS = {
    "src/progresslm/serve/app.py": ("fastapi",),  # serve
    "src/progresslm/serve/handlers.py": ("pydantic",),  # serve, through schemas
    "src/progresslm/serve/limits.py": ("starlette",),  # serve
    "src/progresslm/serve/schemas.py": ("pydantic",),  # serve
    "src/progresslm/online/reward.py": ("gymnasium",),  # sim
}

collect_ignore = [path for path, packages in _NEEDS.items() if not all(importlib.util.find_spec(p) for p in packages)]
