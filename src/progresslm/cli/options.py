"""Command-line options more than one command shares: the backend options (the fields of BackendOptions, spelled
and defaulted the same in `eval`, `watch` and `serve`), and safe names for default output folders."""

from __future__ import annotations

import argparse
import math

from progresslm.backends.base import BackendOptions


class OptionError(ValueError):
    """Options that do not go together; the command prints it and exits with status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every command's help: descriptions and examples kept as written, each option's default shown (not for
    flags, nor when there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, True, argparse.SUPPRESS) or action.nargs == 0:
            return action.help or ""
        return super()._get_help_string(action)


def add_backend_options(parser: argparse.ArgumentParser, omit: tuple[str, ...] = (), **help_for: str) -> None:
    """The backend options (the fields of BackendOptions), spelled and defaulted the same in every
    command that runs a backend (`eval`, `watch`, `serve`); `omit` leaves out options a command has no use for
    (destinations); `help_for` rewords an option's help for a command where it means something more (keys are
    destinations, e.g. temperature=...)."""
    group = parser.add_argument_group("backend options")
    defaults = BackendOptions()
    # `--base-url A B` takes every word up to the next option, which would swallow a command's positional argument
    # (`watch --base-url URL video.mp4`): there the flag is repeated instead (or the URLs joined by commas).
    has_positional = bool(parser._get_positional_actions())
    url_list = {"action": "append"} if has_positional else {"action": "extend", "nargs": "+"}
    several = "--base-url A --base-url B, or A,B" if has_positional else "--base-url A B, or A,B"
    helps = {
        "model": "model name (openai), path or hub id (hf, vllm, nano), checkpoint folder (matcher), "
        "calibration JSON (retrieval)",
        "base_url": f"OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; several ({several}) are replicas of "
        "one model: each request goes to the least busy one, and to another if its replica fails (docs/scale.md)",
        "api_key_env": "environment variable holding the API key",
        "timeout_s": "seconds per request",
        "batch_size": "hf, vllm: prompts per generate call",
        "temperature": "0 means greedy",
        "max_pixels": "cap on image pixels handed to the processor (hf, vllm)",
        "value": "constant: the percentage it answers",
        "replies": 'replay: JSONL of {"uid": ..., "reply": ...}',
        "token_param": "openai: the name of the reply-length field (GPT-5 and o-series models want "
        "max_completion_tokens)",
        "sampling_params": "openai: send no temperature, top_p or seed (models that refuse them)",
        "concurrency": "openai: requests in flight at once, on each --base-url replica",
        "max_retries": "openai: retries on 429, 5xx and dropped connections, with exponential backoff",
        "device": "hf, nano, matcher: auto, cpu, cuda, cuda:N or mps",
        "dtype": "hf, nano: auto, float32, bfloat16 or float16",
        "top_p": "nucleus sampling (with --temperature > 0)",
        "max_new_tokens": "longest reply, in tokens",
        "seed": "sampling seed (each draw of each sample gets its own); also seeds --limit's subset",
        "calibration": "retrieval: the N/A threshold file (progresslm bench calibrate-retrieval)",
        **help_for,
    }
    add = {
        "model": lambda: group.add_argument("--model", help=helps["model"]),
        "base_url": lambda: group.add_argument("--base-url", metavar="URL", help=helps["base_url"],
                                               **url_list),
        "api_key_env": lambda: group.add_argument("--api-key-env", default=defaults.api_key_env, metavar="NAME",
                                                  help=helps["api_key_env"]),
        "concurrency": lambda: group.add_argument("--concurrency", type=int, default=defaults.concurrency,
                                                  help=helps["concurrency"]),
        "timeout_s": lambda: group.add_argument("--timeout", type=float, default=defaults.timeout_s, dest="timeout_s",
                                                help=helps["timeout_s"]),
        "max_retries": lambda: group.add_argument("--max-retries", type=int, default=defaults.max_retries,
                                                  help=helps["max_retries"]),
        "device": lambda: group.add_argument("--device", default=defaults.device, help=helps["device"]),
        "dtype": lambda: group.add_argument("--dtype", default=defaults.dtype, help=helps["dtype"]),
        "batch_size": lambda: group.add_argument("--batch-size", type=int, default=defaults.batch_size,
                                                 help=helps["batch_size"]),
        "temperature": lambda: group.add_argument("--temperature", type=float, default=defaults.temperature,
                                                  help=helps["temperature"]),
        "top_p": lambda: group.add_argument("--top-p", type=float, default=defaults.top_p, help=helps["top_p"]),
        "max_new_tokens": lambda: group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                                                     help=helps["max_new_tokens"]),
        "max_pixels": lambda: group.add_argument("--max-pixels", type=int, help=helps["max_pixels"]),
        "seed": lambda: group.add_argument("--seed", type=int, default=defaults.seed, help=helps["seed"]),
        "value": lambda: group.add_argument("--value", type=float, default=defaults.value, help=helps["value"]),
        "replies": lambda: group.add_argument("--replies", metavar="FILE", help=helps["replies"]),
        "calibration": lambda: group.add_argument("--calibration", metavar="FILE", help=helps["calibration"]),
        "token_param": lambda: group.add_argument("--token-param", default=defaults.token_param,
                                                  choices=["max_tokens", "max_completion_tokens"],
                                                  help=helps["token_param"]),
        "sampling_params": lambda: group.add_argument("--no-sampling-params", dest="sampling_params",
                                                      action="store_false", help=helps["sampling_params"]),
    }  # fmt: skip
    for name, adder in add.items():
        if name not in omit:
            adder()


NUMBERS = (  # (field, option, low, high, low excluded): NaN and infinity pass argparse's float()
    ("temperature", "--temperature", 0.0, math.inf, False),
    ("top_p", "--top-p", 0.0, 1.0, True),
    ("timeout_s", "--timeout", 0.0, math.inf, True),
    ("value", "--value", 0.0, 100.0, False),
)


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """BackendOptions from the options `add_backend_options` added (an omitted one keeps its default).
    `--calibration FILE` is the retrieval backend's model file."""
    defaults = BackendOptions()
    values = {name: getattr(args, name, getattr(defaults, name)) for name in BackendOptions.__dataclass_fields__}
    for name, option, low, high, low_open in NUMBERS:
        value = values[name]
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
            bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
            raise OptionError(f"{option}: expected a number {bound}, got {value:g}")
    urls = values.get("base_url")
    if isinstance(urls, list):  # one URL stays a string, as it always was; several are a list (JSON in config.json)
        values["base_url"] = urls[0] if len(urls) == 1 else urls or None
    calibration = getattr(args, "calibration", None)
    if calibration:
        if getattr(args, "backend", "retrieval") != "retrieval":
            raise OptionError("--calibration is the retrieval backend's threshold file; use it with "
                                             "--backend retrieval")  # fmt: skip
        if values.get("model"):
            raise OptionError("give the retrieval threshold file once: --calibration FILE")
        values["model"] = calibration
    return BackendOptions(**values)

