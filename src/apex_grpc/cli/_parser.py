"""The argparse tree of ``apex-grpc``: global flags, and one sub-parser per command.

Global flags work before or after the command (``apex-grpc --json search x``
and ``apex-grpc search x --json``). ``serve`` and ``index`` belong to the
server package: here they are placeholders whose arguments are handed over
untouched, so the server package is imported only when they run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from apex_grpc import __version__
from apex_grpc.cli import _chat, _chats, _converse, _proto, _research, _search

PROG = "apex-grpc"
SERVER_COMMANDS = ("serve", "index")

Handler = Callable[..., int]

_EPILOG = """\
environment:
  APEX_API_KEY, MACROCOSMOS_API_KEY  the API key (when --api-key is not given)
  MACROCOSMOS_BASE_URL               the endpoint (when --base-url is not given)
  MACROCOSMOS_USE_HTTPS              unset/true/1/yes/on: TLS; anything else: plaintext
  APEX_GRPC_ALLOW_INSECURE_KEY=1     allow a key over plaintext to a non-loopback host
  APEX_GRPC_LOG=debug                log every RPC attempt to stderr

exit status: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl-C)
"""


_CHAT_DESCRIPTION = f"""\
Stream a chat completion to the terminal. With no prompt: read it from stdin
when piped, or start an interactive conversation on a terminal (-i forces it).

Interactive mode: Ctrl-C cancels the answer; Ctrl-D or /exit quits. When the
conversation outgrows the model's context window, the oldest turns are left
out (the system message stays), and you are told once. Commands:
{_converse.commands_help()}

An answer cut by the token limit ends with a note on stderr. Conversations are
not stored unless --save: then each turn goes through the stored-chat RPCs, so
it shows in `apex-grpc chats list`.
"""


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().lower(), value


def add_client_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The global flags; after the command they only override what was given."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_command else value

    if after_command:
        # Accepted, but listed once, in ``apex-grpc --help``.
        group: Any = _HiddenGroup(parser)
    else:
        group = parser.add_argument_group("global flags (also accepted after the command)")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(None),
        help="API key (default: $APEX_API_KEY, then $MACROCOSMOS_API_KEY)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help="endpoint: host[:port], https://host or a gRPC target (default:"
        " $MACROCOSMOS_BASE_URL, else Apex's former endpoint, which may no longer answer)",
    )
    group.add_argument(
        "--secure",
        dest="secure",
        action="store_const",
        const=True,
        default=default(None),
        help="use TLS (the default unless $MACROCOSMOS_USE_HTTPS says otherwise)",
    )
    group.add_argument(
        "--insecure",
        dest="secure",
        action="store_const",
        const=False,
        default=default(None),
        help="plaintext (only sends the key to loopback unless --allow-insecure-key)",
    )
    group.add_argument(
        "--allow-insecure-key",
        action="store_const",
        const=True,
        default=default(None),
        help="allow sending the key in plaintext to a host that is not loopback",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(None),
        help="overall deadline of a call (research: of the whole wait); default 600",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        default=default(None),
        help="retries of UNAVAILABLE calls, with backoff (default 2)",
    )
    group.add_argument(
        "--app-name",
        metavar="NAME",
        default=default(None),
        help="sent as x-source (default: apex-grpc-cli)",
    )
    group.add_argument(
        "--metadata",
        dest="metadata_after" if after_command else "metadata",
        action="append",
        type=_metadata_pair,
        metavar="KEY=VALUE",
        default=default(None),
        help="extra request metadata (repeatable)",
    )
    group.add_argument(
        "--load-balancing",
        choices=("pick_first", "round_robin"),
        default=default(None),
        help="policy across the addresses a target resolves to",
    )
    group.add_argument(
        "--compression",
        action="store_const",
        const=True,
        default=default(False),
        help="gzip-compress requests",
    )
    group.add_argument(
        "--json",
        action="store_const",
        const=True,
        default=default(False),
        help="machine-readable output: JSON (JSON Lines for streams)",
    )
    group.add_argument(
        "--debug",
        action="store_const",
        const=True,
        default=default(False),
        help="log RPCs to stderr and show tracebacks",
    )


class _HiddenGroup:
    """Adds arguments to a parser without showing them in its help."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        self._parser.add_argument(*names, **kwargs)


class _Builder:
    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            prog=PROG,
            description="The Apex command line: chat, web search, deep research, stored\n"
            "chats, and the local Apex server.",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_client_options(self.parser, after_command=False)
        self.parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
        self.commands = self.parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self.by_name: dict[str, argparse.ArgumentParser] = {}

    def command(
        self,
        subparsers: Any,
        name: str,
        handler: Handler | None,
        help_text: str,
        description: str | None = None,
        *,
        client_options: bool = True,
        **kwargs: Any,
    ) -> argparse.ArgumentParser:
        if client_options:
            kwargs.setdefault("epilog", "Global flags (apex-grpc --help) work here too.")
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=help_text, description=description or help_text, **kwargs
        )
        if client_options:
            add_client_options(parser, after_command=True)
        parser.set_defaults(command_prog=parser.prog)
        if handler is not None:
            parser.set_defaults(handler=handler)
        self.by_name[parser.prog] = parser
        return parser


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("-t", "--temperature", type=float, help="sampling temperature (0.7)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass (0.95)")
    group.add_argument("--top-k", type=float, help="sample from the k likeliest tokens")
    group.add_argument(
        "--max-new-tokens",
        "--max-tokens",
        type=int,
        dest="max_new_tokens",
        help="longest answer, in tokens (default 4096, as the official SDK 2.1.0; a local"
        " apex-grpc serve cuts answers at its own --max-new-tokens)",
    )
    group.add_argument("--seed", type=int, help="sampling seed (default: random)")
    group.add_argument(
        "--greedy", action="store_true", help="no sampling: always the likeliest token"
    )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and every sub-parser by its prog (for errors with the right usage)."""
    b = _Builder()
    sub = b.commands

    chat = b.command(
        sub,
        "chat",
        _chat.run,
        "chat with a model: stream the answer, or talk interactively",
        _CHAT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("prompt", nargs="*", help="the prompt ('-': read stdin)")
    chat.add_argument("-s", "--system", metavar="TEXT", help="system message")
    chat.add_argument("-m", "--model", help="model name (default: the server's choice)")
    chat.add_argument(
        "--no-stream", action="store_true", help="wait for the whole answer, then print it"
    )
    chat.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="a conversation: each line of input is a turn; the history is kept",
    )
    chat.add_argument(
        "--save",
        action="store_true",
        help="store the conversation as a chat (apex-grpc chats list): answered by the"
        " server's stored-chat RPCs, whole rather than streamed, from the prompt alone",
    )
    _sampling_options(chat)

    search = b.command(sub, "search", _search.run, "search the web through Apex miners")
    search.add_argument("query", nargs="+", help="what to search for")
    search.add_argument(
        "-n", "--n-results", type=int, default=5, metavar="N", help="results (%(default)s)"
    )
    search.add_argument(
        "--max-response-time",
        type=float,
        default=30,
        metavar="SECONDS",
        help="how long miners may take (%(default)s)",
    )

    research = b.command(
        sub,
        "research",
        _research.run,
        "run a deep-research job and watch it until done",
        "Submit a deep-research job and show its progress until it completes, then print"
        " the result. --detach prints the job id and returns; --job ID resumes watching.",
    )
    research.add_argument("question", nargs="*", help="the question ('-': read stdin)")
    research.add_argument("--job", metavar="ID", help="watch an existing job instead")
    research.add_argument(
        "--detach", action="store_true", help="submit, print the job id, and return"
    )
    research.add_argument("-m", "--model", help="model name (default: the server's choice)")

    chats = b.command(sub, "chats", None, "list, show, search and delete stored chats")
    chats_sub = chats.add_subparsers(dest="chats_command", metavar="ACTION", required=True)
    listing = b.command(chats_sub, "list", _chats.list_chats, "list your chats, newest first")
    listing.add_argument("--type", dest="chat_type", default="", help="only this chat type")
    show = b.command(chats_sub, "show", _chats.show_chat, "show a chat's prompts and answers")
    show.add_argument("chat_id", metavar="CHAT_ID")
    delete = b.command(
        chats_sub, "delete", _chats.delete_chats, "delete chats and their completions"
    )
    delete.add_argument("chat_ids", nargs="+", metavar="CHAT_ID")
    find = b.command(chats_sub, "search", _chats.search_chats, "ids of chats whose text matches")
    find.add_argument("term", nargs="+", metavar="TERM")

    proto = b.command(
        sub,
        "proto",
        None,
        "write apex.proto and its imports to a folder, for protoc or buf",
        client_options=False,
    )
    _proto.add_arguments(proto)

    for name, text in (
        ("serve", "run the local Apex server (apex-grpc serve --help)"),
        ("index", "add documents to the local server's search index (apex-grpc index --help)"),
    ):
        b.command(sub, name, None, text, client_options=False, add_help=False)
    return b.parser, b.by_name
