"""progresslm: progress reasoning for vision-language models (ProgressLM, arXiv 2601.15224).

The Python API (docs/python.md), imported on first use so that `import progresslm` stays light:

    import progresslm

    bench = progresslm.load_bench(["data/visual_same_view.jsonl"])          # the authors' JSONL format
    outcome = progresslm.evaluate(progresslm.EvalConfig(bench=["data/visual_same_view.jsonl"], out="runs/x",
                                                        image_root="data/images", backend="matcher"))
    with progresslm.ProgressScorer("open the drawer", ["k0.jpg", "k1.jpg", "k2.jpg"]) as scorer:
        scorer.score("now.jpg")[0].progress                                    # a fraction in [0, 1], or None

`ProgressMonitor` smooths a stream of such estimates into a curve with events, `ProgressReward` wraps a gymnasium
env with a dense progress reward, and `register_backend` plugs a model class of one's own into `eval`, `watch`
and `serve`.
"""

from __future__ import annotations

import importlib

__version__ = "0.3.0"

_API = {
    "evaluate": "progresslm.evaluation:evaluate",
    "EvalConfig": "progresslm.evaluation:EvalConfig",
    "EvalError": "progresslm.evaluation:EvalError",
    "load_bench": "progresslm.bench.format:load_bench",
    "Sample": "progresslm.types:Sample",
    "Demo": "progresslm.types:Demo",
    "Prediction": "progresslm.types:Prediction",
    "parse_reply": "progresslm.parsing:parse_reply",
    "build_prompt": "progresslm.prompts:build_prompt",
    "compute_metrics": "progresslm.metrics:compute_metrics",
    "ProgressScorer": "progresslm.online.scorer:ProgressScorer",
    "Estimate": "progresslm.online.scorer:Estimate",
    "ProgressMonitor": "progresslm.online.monitor:ProgressMonitor",
    "ProgressReward": "progresslm.online.reward:ProgressReward",
    "Backend": "progresslm.backends.base:Backend",
    "BackendOptions": "progresslm.backends.base:BackendOptions",
    "Reply": "progresslm.backends.base:Reply",
    "Request": "progresslm.backends.base:Request",
    "register_backend": "progresslm.backends.registry:register_backend",
    "create_backend": "progresslm.backends.registry:create_backend",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'progresslm' has no attribute {name!r}")

    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
