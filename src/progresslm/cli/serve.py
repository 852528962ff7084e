"""`progresslm serve`: placeholder registered by the maintainer; the helper that owns this file replaces it."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve a progress model over HTTP (OpenAI-compatible) (not implemented yet)")
    parser.set_defaults(handler=lambda args: print("progresslm serve is not implemented yet") or 2)
