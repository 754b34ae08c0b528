"""``apex-grpc``'s entry point: parse, build the client, run the command, map errors.

Errors are one line on stderr (``error: UNAVAILABLE: ...``) and an exit
status: 1 for errors, 2 for usage and invalid arguments (found by the
client or the server), 130 for Ctrl-C. ``--debug`` adds the traceback, a
log line per RPC attempt, and grpc core's own log lines, which are
otherwise kept off the terminal.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from apex_grpc.cli._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    Endpoint,
    Interrupted,
    UsageError,
    describe,
    error_line,
    key_in_use,
)
from apex_grpc.cli._parser import SERVER_COMMANDS, build_parser
from apex_grpc.cli._terminal import NoteHandler, Terminal

DEFAULT_APP_NAME = "apex-grpc-cli"


def client_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """ApexClient keyword arguments for the global flags that were given."""
    kwargs: dict[str, Any] = {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "secure": args.secure,
        "allow_insecure_key": args.allow_insecure_key,
        "app_name": args.app_name or DEFAULT_APP_NAME,
        "compression": bool(args.compression),
        "load_balancing": args.load_balancing,
        "metadata": [*(args.metadata or ()), *(getattr(args, "metadata_after", None) or ())],
    }
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    if args.max_retries is not None:
        kwargs["max_retries"] = args.max_retries
    return kwargs


def _debug_logging(term: Terminal) -> None:
    logger = logging.getLogger("apex_grpc")
    logger.addHandler(NoteHandler(term))
    logger.setLevel(logging.DEBUG)


def _quiet_grpc_core() -> None:
    """Keep grpc core's own log lines (a failed TLS handshake, ...) off the terminal.

    grpc core writes them to file descriptor 2 from native code, at a level
    it reads from GRPC_VERBOSITY once, when grpc is imported; ``import
    apex_grpc`` has imported it before any CLI code runs, so setting the
    variable here would change nothing. Instead Python's stderr moves to a
    copy of descriptor 2, and descriptor 2 itself goes to /dev/null: all the
    CLI writes still reaches the terminal, native writes do not. A user who
    sets GRPC_VERBOSITY or GRPC_TRACE asked for grpc's lines and keeps them.
    """
    if os.environ.get("GRPC_VERBOSITY") or os.environ.get("GRPC_TRACE"):
        return
    sys.stderr.flush()
    stderr = open(  # noqa: SIM115  (it is sys.stderr from now on, open until exit)
        os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors=sys.stderr.errors
    )
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = stderr
    # Python's own fatal-error report (a crash in native code) still reaches the terminal.
    faulthandler.enable(file=stderr)


def _asks_for_debug_logs(arguments: Sequence[str]) -> bool:
    """Whether server arguments ask for debug logs (``--log-level debug`` or ``=debug``)."""
    pairs = zip(arguments, [*arguments[1:], ""], strict=False)
    return any(
        (flag == "--log-level" and value.lower() == "debug") or flag.lower() == "--log-level=debug"
        for flag, value in pairs
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``apex-grpc`` with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser, parsers = build_parser()
    args, extras = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.command in SERVER_COMMANDS:
        from apex_grpc.cli._server import run_server_command

        # grpc is imported by now, so the server's own GRPC_VERBOSITY setting comes too late
        # here (it works for `python -m apex_grpc_server`); keep core's lines off the same way.
        if not _asks_for_debug_logs(extras):
            _quiet_grpc_core()
        return run_server_command(args.command, extras)
    command_parser = parsers.get(getattr(args, "command_prog", ""), parser)
    if extras:
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if not args.debug:
        _quiet_grpc_core()
    term = Terminal.detect()
    standalone = getattr(args, "standalone", None)  # a command that needs no client
    if standalone is not None:
        status: int = standalone(args, term)
        return status
    if args.debug:
        _debug_logging(term)
    try:
        return _run(args, term)
    except UsageError as error:
        command_parser.error(str(error))
    except BrokenPipeError:
        # The reader is gone: send what is left nowhere and leave quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace, term: Terminal) -> int:
    from apex_grpc import ApexClient

    endpoint: Endpoint | None = None
    try:
        with ApexClient(**client_arguments(args)) as client:
            endpoint = Endpoint(client.target, client.secure)
            status: int = args.handler(args, client, term)
            return status
    except Interrupted:  # handled where Ctrl-C landed
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        term.after_interrupt()
        if args.debug:
            traceback.print_exc()
        return EXIT_INTERRUPTED
    except (UsageError, BrokenPipeError):
        raise
    except Exception as error:
        if args.debug:
            term.finish_answer_line()
            traceback.print_exc()
        term.error(error_line(error, endpoint, secret=key_in_use(args)))
        return describe(error, endpoint)[1]
