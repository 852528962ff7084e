"""Backend name -> class path. Nothing heavy is imported until a backend is asked for by name."""

from __future__ import annotations

import importlib

from progresslm.backends.base import Backend, BackendOptions

BACKENDS: dict[str, str] = {
    "openai": "progresslm.backends.openai_compat:OpenAIBackend",
    "hf": "progresslm.backends.hf_transformers:HFBackend",
    "vllm": "progresslm.backends.vllm_engine:VLLMBackend",
    "replay": "progresslm.backends.replay:ReplayBackend",
    "constant": "progresslm.backends.baselines:ConstantBackend",
    "random": "progresslm.backends.baselines:RandomBackend",
    "pixel-nn": "progresslm.backends.pixel_nn:PixelNNBackend",
    "retrieval": "progresslm.backends.retrieval:RetrievalBackend",
    "matcher": "progresslm.matcher.backend_matcher:MatcherBackend",
    "nano": "progresslm.nano.backend_nano:NanoBackend",
}


# The default model of `eval`, `watch`, `serve`, `ProgressScorer` and `ProgressReward`: the better of the two
# shipped models on the full simulated benchmark (README: "The default model").
DEFAULT_BACKEND = "matcher"


ENTRY_POINT_GROUP = "progresslm.backends"  # a package's own backends: [project.entry-points."progresslm.backends"]


class UnknownBackendError(ValueError):
    pass


def register_backend(name: str, target: str | type[Backend]) -> None:
    """Make `name` usable wherever a backend name is (`--backend NAME` in eval, watch and serve; ProgressScorer):
    `target` is a Backend subclass or its "module:Class" path."""
    if isinstance(target, type):
        if not issubclass(target, Backend):
            raise TypeError(f"{target.__name__} is not a progresslm Backend subclass")
        _CLASSES[name] = target
        BACKENDS[name] = f"{target.__module__}:{target.__qualname__}"
    else:
        BACKENDS[name] = target
        _CLASSES.pop(name, None)


_CLASSES: dict[str, type[Backend]] = {}
_entry_points_read = False


def _read_entry_points() -> None:
    """Backends that installed packages declare in the `progresslm.backends` entry-point group."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    # lazy: importlib.metadata costs ~35 ms; the registry stays light for --help
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        BACKENDS.setdefault(entry.name, entry.value)


def _load(path: str, shown: str) -> type[Backend]:
    module_name, _, class_name = path.partition(":")
    try:
        value = importlib.import_module(module_name)
        for part in class_name.split("."):
            value = getattr(value, part)
    except ImportError as error:
        if error.name and module_name.startswith(error.name) and not module_name.startswith("progresslm."):
            raise UnknownBackendError(f"backend {shown!r}: cannot import module {module_name!r} ({error})") from None
        raise
    except AttributeError:
        raise UnknownBackendError(f"backend {shown!r}: module {module_name!r} has no {class_name!r}") from None
    if not (isinstance(value, type) and issubclass(value, Backend)):
        raise UnknownBackendError(f"backend {shown!r}: {path} is not a progresslm Backend subclass "
                                  "(see docs/python.md, 'Your own backend')")  # fmt: skip
    return value


def backend_class(name: str) -> type[Backend]:
    """The backend class for `name`: a registered name (built in, `register_backend`, or an installed package's
    `progresslm.backends` entry point), or "module:Class" for a class of one's own. An unknown name lists the
    valid ones."""
    if name in _CLASSES:
        return _CLASSES[name]
    if name not in BACKENDS:
        _read_entry_points()
    if name in BACKENDS:
        return _load(BACKENDS[name], name)
    if ":" in name:
        return _load(name, name)
    raise UnknownBackendError(f"unknown backend {name!r}; valid backends: {', '.join(sorted(BACKENDS))}, or "
                              "module:Class for a Backend subclass of your own")  # fmt: skip


def create_backend(name: str, options: BackendOptions, mode: str) -> Backend:
    return backend_class(name)(options, mode)
