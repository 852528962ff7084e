"""`progresslm watch`: placeholder registered by the maintainer; the helper that owns this file replaces it."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("watch", help="run the progress monitor over a video or a folder of frames (not implemented yet)")
    parser.set_defaults(handler=lambda args: print("progresslm watch is not implemented yet") or 2)
