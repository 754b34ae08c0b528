"""``apex-grpc serve`` and ``apex-grpc index``: the server's public command-line entry.

``apex-grpc`` (the client's CLI) calls `register` to add these sub-commands;
``python -m apex_grpc_server`` calls `main`. Standard library only until a
command runs, so the client's other commands start fast.

- ``flags.py``: the flags and environment variables, and `config_from_args`.
- ``commands.py``: `run_serve` and `run_index`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from apex_grpc_server.cli.commands import run_index, run_serve
from apex_grpc_server.cli.flags import add_index_arguments, add_serve_arguments, config_from_args


def register(subparsers: Any) -> None:
    """Add the ``serve`` and ``index`` sub-commands to an argparse subparsers object.

    Each sets ``func``: call ``args.func(args)`` to run it; it returns the
    exit status.
    """
    serve = subparsers.add_parser(
        "serve",
        help="run the local Apex server",
        description="Run the local Apex server: apex.v1.ApexService with health and reflection.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)
    index = subparsers.add_parser(
        "index",
        help="add documents to the server's web-retrieval index",
        description="Add or update documents (by url) in the search index of a data folder.",
    )
    add_index_arguments(index)
    index.set_defaults(func=run_index)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m apex_grpc_server [serve flags]``, or ``... index PATH...``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["index"]:
        parser = argparse.ArgumentParser(
            prog="python -m apex_grpc_server index",
            description="Add or update documents (by url) in the server's search index.",
        )
        add_index_arguments(parser)
        return run_index(parser.parse_args(arguments[1:]))
    if arguments[:1] == ["serve"]:
        arguments = arguments[1:]
    parser = argparse.ArgumentParser(
        prog="python -m apex_grpc_server",
        description="Run the local Apex server (same flags as `apex-grpc serve`; "
        "`python -m apex_grpc_server index PATH...` builds the search index).",
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(arguments))


__all__ = [
    "add_index_arguments",
    "add_serve_arguments",
    "config_from_args",
    "main",
    "register",
    "run_index",
    "run_serve",
]
