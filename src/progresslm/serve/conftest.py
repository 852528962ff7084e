"""pytest collects this package's doctests; without the `serve` extra, skip the modules that need it."""

import importlib.util

_HAVE_SERVE = all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn", "pydantic"))
collect_ignore = [] if _HAVE_SERVE else ["app.py", "handlers.py", "limits.py", "schemas.py", "runner.py"]
