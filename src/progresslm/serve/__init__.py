"""`progresslm serve`: a progress model behind HTTP (OpenAI chat completions, progress, sessions).

    from progresslm.serve import ServeConfig, create_app
    app = create_app(ServeConfig())  # serve it with uvicorn, or `progresslm serve`

FastAPI and uvicorn (`pip install -e '.[serve]' (in the progresslm clone)`) are imported only by `create_app` and the
runner, so this package imports without them.
"""

from __future__ import annotations

from typing import Any

from progresslm.serve.serve_config import ServeConfig, ServeConfigError

__all__ = ["ServeConfig", "ServeConfigError", "create_app"]


def create_app(config: ServeConfig, backend: Any = None):
    """The FastAPI app (see `progresslm.serve.app.create_app`)."""
    from progresslm.serve.app import create_app as build  # lazy: FastAPI (the [serve] extra), see above

    return build(config, backend)
