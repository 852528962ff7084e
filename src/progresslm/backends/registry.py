"""Backend name -> class path. Nothing heavy is imported until a backend is asked for by name."""

from __future__ import annotations

import importlib

from progresslm.backends.base import Backend, BackendOptions

BACKENDS: dict[str, str] = {
    "openai": "progresslm.backends.openai_compat:OpenAIBackend",
    "hf": "progresslm.backends.hf:HFBackend",
    "vllm": "progresslm.backends.vllm_engine:VLLMBackend",
    "replay": "progresslm.backends.replay:ReplayBackend",
    "constant": "progresslm.backends.baselines:ConstantBackend",
    "random": "progresslm.backends.baselines:RandomBackend",
    "pixel-nn": "progresslm.backends.pixel_nn:PixelNNBackend",
    "retrieval": "progresslm.backends.retrieval:RetrievalBackend",
    "matcher": "progresslm.backends.matcher:MatcherBackend",
    "nano": "progresslm.backends.nano:NanoBackend",
}


# The default model of `eval`, `watch`, `serve`, `ProgressScorer` and `ProgressReward`: the better of the two
# shipped models on the full simulated benchmark (README: "The default model").
DEFAULT_BACKEND = "matcher"


class UnknownBackendError(ValueError):
    pass


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under `name`; an unknown name lists the valid ones."""
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; valid backends: {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(name: str, options: BackendOptions, mode: str) -> Backend:
    return backend_class(name)(options, mode)
