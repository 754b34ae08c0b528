"""Running ``serve`` and ``index``: what each command does once its flags are parsed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from apex_grpc_server.cli.flags import config_from_args

if TYPE_CHECKING:
    from apex_grpc_server._runtime.server import ServerInfo


def _fail(command: str, message: object, status: int) -> int:
    print(f"apex-grpc {command}: error: {message}", file=sys.stderr)
    return status


def _write_port_file(path: str, info: ServerInfo) -> None:
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(f"{info.port}\n", encoding="utf-8")
    partial.replace(target)  # readers never see a half-written file


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status.

    Nothing touches the disk before the settings (API keys first) are valid
    and the port is free. Once serving, stdout gets the ``export`` lines a
    client needs.
    """
    # An application may quiet grpc core's own log lines (a library must not):
    # before grpc is first imported, or they print raw beside our one-line errors.
    if args.log_level != "DEBUG":
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import asyncio

    from apex_grpc_server._engines import EngineUnavailable
    from apex_grpc_server._logging import configure_logging
    from apex_grpc_server._runtime.server import serve
    from apex_grpc_server._runtime.startup import ListenError, check_port, client_exports

    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
        config.validate()
        check_port(config)
    except ListenError as error:
        return _fail("serve", error, 1)
    except (OSError, ValueError) as error:
        return _fail("serve", error, 2)
    given_keys = [key.strip() for key in args.api_key if key.strip()]

    def ready(info: ServerInfo) -> None:
        if args.port_file:
            _write_port_file(args.port_file, info)
        print(client_exports(info, given_keys), flush=True)

    try:
        asyncio.run(serve(config, ready=ready))
    except EngineUnavailable as error:
        return _fail("serve", error, 1)
    except RuntimeError as error:  # grpc's bind failure, after check_port passed
        message = str(error).split(";")[0]  # drop grpc's "set GRPC_VERBOSITY=debug" advice
        return _fail("serve", f"{message} (run with --log-level debug for grpc's reason)", 1)
    except (OSError, ValueError) as error:  # unreadable TLS files, bad settings
        return _fail("serve", error, 1)
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        return 130
    return 0


def run_index(args: argparse.Namespace) -> int:
    """Index the given paths into the data folder's search index; say where and what."""
    import asyncio

    from apex_grpc_server._runtime.server import INDEX_FILE
    from apex_grpc_server._search.documents import DocumentError, read_documents
    from apex_grpc_server._search.index import SearchIndex

    path = args.data_dir.expanduser() / INDEX_FILE
    try:
        documents, skipped = read_documents(args.paths)
    except (DocumentError, OSError) as error:
        return _fail("index", error, 2)
    index = SearchIndex(path)
    try:
        stats = asyncio.run(index.upsert(documents))
    finally:
        index.close()
    print(
        f"indexed {_count(len(documents), 'document')} into {path}: {stats.added} added,"
        f" {stats.updated} updated, {stats.unchanged} unchanged"
        f" ({_count(stats.passages, 'new passage')})"
    )
    if skipped:
        names = ", ".join(str(path) for path in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"skipped {_count(len(skipped), 'file')} (binary or not UTF-8): {names}{more}")
    return 0


def _count(number: int, noun: str) -> str:
    """``1 document``, ``2 documents``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
