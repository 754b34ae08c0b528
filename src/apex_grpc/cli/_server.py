"""``apex-grpc serve`` / ``apex-grpc index``: handed to the server package's own CLI.

The server package registers these sub-commands itself (``register``); it is
imported only here, when one of them runs, so the other commands work with
the base install (grpcio and protobuf) and start fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from apex_grpc.cli._parser import PROG


def run_server_command(command: str, arguments: Sequence[str]) -> int:
    """Parse ``command arguments...`` with the server's parser and run it."""
    from apex_grpc_server.cli import register

    parser = argparse.ArgumentParser(prog=PROG)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *arguments])
    status: int = args.func(args)
    return status
