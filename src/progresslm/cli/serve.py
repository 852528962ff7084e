"""`progresslm serve`: a backend behind an OpenAI-compatible HTTP server, with progress and session endpoints."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from progresslm.backends.base import BackendError
from progresslm.backends.registry import BACKENDS, DEFAULT_BACKEND, UnknownBackendError, create_backend
from progresslm.cli.options import OptionError, add_backend_options, backend_options
from progresslm.prompts import MODES
from progresslm.serve.runner import serve_forever
from progresslm.serve.serve_config import ServeConfig, ServeConfigError

log = logging.getLogger("progresslm")


def add_parser(subparsers) -> None:
    d = ServeConfig()
    parser = subparsers.add_parser(
        "serve",
        help="serve a progress model over HTTP (OpenAI-compatible)",
        description="Serve a backend over HTTP: POST /v1/chat/completions (OpenAI-compatible: use it with "
        "`progresslm eval --backend openai --base-url http://HOST:PORT/v1 --model any`), POST /v1/progress, "
        "monitoring sessions under /v1/sessions, GET /health. Concurrent requests are answered in batches. "
        "Without --api-key there is no authentication: keep the default loopback --host unless the network is "
        "trusted. Limits and what a client sees at each: docs/serve.md.",
    )
    parser.add_argument("--host", default=d.host, help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=d.port, help="TCP port")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of: {', '.join(sorted(BACKENDS))}")
    parser.add_argument("--mode", default=d.mode, help=f"prompt mode of /v1/progress and sessions: {', '.join(MODES)}")
    parser.add_argument("--served-model-name", nargs="+", default=[], metavar="NAME", dest="served_model_names",
                        help="the model names chat requests may ask for, each an alias of the served model (as "
                        "vLLM's flag); the reply names the one asked. Default: any name, answered by the served model")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route but /health (as vLLM's "
                      "server does); visible in the process list, prefer --api-key-env")
    auth.add_argument("--server-api-key-env", dest="server_api_key_env", metavar="NAME",
                      help="read the server's API key from this environment variable")
    limits = parser.add_argument_group("batching and limits")
    limits.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                        help="how long a request waits for others to batch with")
    limits.add_argument("--max-queue", type=int, default=d.max_queue, help="queued requests before 503s")
    limits.add_argument("--max-body-mb", type=float, default=d.max_body_mb, help="request body size limit (413 above)")
    limits.add_argument("--max-images", type=int, default=d.max_images, help="images per request")
    limits.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, help="pixels per image")
    limits.add_argument("--max-new-tokens-cap", type=int, default=d.max_new_tokens_cap,
                        help="the largest max_tokens a request may ask for")
    limits.add_argument("--max-sessions", type=int, default=d.max_sessions, help="monitoring sessions open at once")
    limits.add_argument("--session-ttl", type=float, default=d.session_ttl_s, dest="session_ttl_s",
                        help="seconds before an idle session is closed")
    limits.add_argument("--max-frames-per-call", type=int, default=d.max_frames_per_call,
                        help="frames one session call may send")
    limits.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s, dest="drain_timeout_s",
                        help="seconds queued requests get to finish on shutdown")
    limits.add_argument("--max-prompt-chars", type=int, default=d.max_prompt_chars,
                        help="text of one chat request, in characters (413 above; default %(default)s)")
    limits.add_argument("--max-demo-steps", type=int, default=d.max_demo_steps,
                        help="steps of a text demonstration (400 above; default %(default)s)")
    limits.add_argument("--max-request-pixels", type=int, default=d.max_request_pixels,
                        help="decoded pixels of one request's images (413 above; default %(default)s)")
    limits.add_argument("--max-inflight-pixels", type=int, default=d.max_inflight_pixels,
                        help="decoded pixels of all requests in flight (429 above; default %(default)s)")
    limits.add_argument("--work-side", type=int, default=d.work_side,
                        help="longest side images are decoded down to (default %(default)s)")
    limits.add_argument("--body-timeout", type=float, default=d.body_timeout_s, dest="body_timeout_s",
                        help="seconds a request body may take to arrive (408 after; default %(default)s)")
    limits.add_argument("--max-connections", type=int, default=d.max_connections,
                        help="open connections before new ones get 503 (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level (the access log only at debug)")
    add_backend_options(
        parser,
        omit=("value", "replies"),
        model="model path or hub id (hf, vllm, nano), model name (openai), checkpoint folder (matcher)",
        base_url="openai backend: the OpenAI-compatible server to forward to; several are replicas of one model, "
        "requests spread over them (docs/scale.md)",
        batch_size="requests answered in one backend call (batched across clients)",
        temperature="default when a request sends none; 0 means greedy",
        max_new_tokens="default when a request sends no max_tokens",
    )
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace):
    options = backend_options(args)
    fields = ("host", "port", "backend", "mode", "batch_wait_ms", "max_queue", "max_body_mb", "max_images",
              "max_image_pixels", "max_new_tokens_cap", "max_sessions", "session_ttl_s", "max_frames_per_call",
              "drain_timeout_s", "max_prompt_chars", "max_demo_steps", "max_request_pixels", "max_inflight_pixels",
              "work_side", "body_timeout_s", "max_connections")  # fmt: skip
    key = getattr(args, "api_key", None)
    if getattr(args, "server_api_key_env", None):
        key = os.environ.get(args.server_api_key_env)
        if not key:
            raise ServeConfigError(f"--server-api-key-env: the environment variable {args.server_api_key_env} is not set")
    return ServeConfig(options=options, api_key=key, max_batch=args.batch_size,
                       served_model_names=tuple(getattr(args, "served_model_names", None) or ()),
                       **{name: getattr(args, name) for name in fields})


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ServeConfigError, OptionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:  # lazy: FastAPI comes with the app (the [serve] extra); every other command imports this module
        from progresslm.serve.app import create_app
    except ImportError as err:
        print(f"error: progresslm serve needs FastAPI and uvicorn: pip install -e '.[serve]' (in the progresslm clone) ({err})", file=sys.stderr)
        return 2
    try:
        backend = create_backend(config.backend, config.options, config.mode)  # load the model before listening
    except UnknownBackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    log.info("serving %s (%s backend)", backend.model_name, config.backend)
    try:
        serve_forever(create_app(config, backend), config, args.log_level)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after a clean shutdown
        pass
    finally:
        backend.close()
    log.info("stopped")
    return 0
