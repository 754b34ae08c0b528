"""Server lifecycle: build, bind, serve, and stop gracefully; in a thread or as the main loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from apex_grpc_server._chat.completions import ChatCompletions
from apex_grpc_server._config import ServerConfig
from apex_grpc_server._engines import ChatEngine, create_engine
from apex_grpc_server._engines.process import ProcessEngine
from apex_grpc_server._http import bind_http, start_http
from apex_grpc_server._metrics import create_metrics
from apex_grpc_server._metrics.recorder import Metrics
from apex_grpc_server._research.jobs import ResearchJobs
from apex_grpc_server._rpc.api_keys import Authenticator
from apex_grpc_server._rpc.call_scope import HANDOVER_S, SERVICE, CallPolicy
from apex_grpc_server._rpc.routes import ApexRoutes
from apex_grpc_server._rpc.servicer import ApexServicer
from apex_grpc_server._runtime.addresses import bind_address
from apex_grpc_server._runtime.datalock import DataDirectoryLock
from apex_grpc_server._runtime.drain import turn_away_new_calls
from apex_grpc_server._runtime.shutdown import EXIT_MARGIN_S, exit_watchdog
from apex_grpc_server._runtime.store_monitor import StoreMonitor
from apex_grpc_server._search.documents import default_corpus
from apex_grpc_server._search.index import SearchIndex
from apex_grpc_server._store import Storage, open_store

if TYPE_CHECKING:  # the HTTP face is loaded only with http_port
    from apex_grpc_server._http.server import HttpFace

logger = logging.getLogger("apex_grpc_server")

INDEX_FILE = "index.sqlite3"
STREAM_LOOKAHEAD = 256 * 1024
"""Bytes of a call's request the server accepts before its handler reads them."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where a started server listens."""

    port: int
    target: str
    config: ServerConfig
    metrics_port: int | None = None
    """The bound port of http://HOST:PORT/metrics (None: metrics are off)."""
    http_port: int | None = None
    """The bound port of the HTTP face (None: off)."""


def server_options(config: ServerConfig) -> list[tuple[str, Any]]:
    """Channel arguments: message limits, keepalive policy, no silent port sharing, stream limit."""
    return [
        ("grpc.so_reuseport", 0),
        # A call's body is taken in at most STREAM_LOOKAHEAD bytes ahead of its handler:
        # a refused (unauthenticated) call is never read, and HTTP/2 flow control keeps
        # the rest of it on the caller's side. grpc's bandwidth probe would grow the window
        # to megabytes per call (48 concurrent 15 MB calls: +52-79 MB; without: +4 MB).
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", STREAM_LOOKAHEAD),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # The server pings idle clients every minute to find dead connections.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # Clients may ping (apex-grpc's client pings every 30 s), even with no
        # call in flight, but not more often than every 10 s.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        *(
            [("grpc.max_concurrent_streams", config.max_concurrent_streams)]
            if config.max_concurrent_streams
            else []
        ),
    ]


def metrics_url(config: ServerConfig, port: int) -> str:
    """Where the metrics of a server on ``port`` are scraped."""
    host = config.metrics_host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


class ApexServer:
    """One server's parts and lifecycle, on the running event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._server: grpc.aio.Server | None = None
        self._engine: ChatEngine | None = None
        self._index: SearchIndex | None = None
        self._store: Storage | None = None
        self._research: ResearchJobs | None = None
        self._monitor: StoreMonitor | None = None
        self._health: Any = None
        self._policy: CallPolicy | None = None
        self._lock: DataDirectoryLock | None = None
        self._metrics: Metrics | None = None
        self._metrics_port: int | None = None
        self._http: HttpFace | None = None
        self.info: ServerInfo | None = None

    @property
    def store(self) -> Storage | None:
        """The open store (None before the server starts and once it has stopped)."""
        return self._store

    async def start(self) -> ServerInfo:
        """Validate the config, load the engine and databases, bind and start serving."""
        config = self.config
        config.validate()
        try:
            return await self._start()
        except BaseException as error:
            await self._close_parts()
            # The traceback's frames still hold the half-built grpc server; freed only at
            # interpreter exit, grpcio 1.64's aio server can hang the process there.
            traceback.clear_frames(error.__traceback__)
            raise

    async def _start(self) -> ServerInfo:
        config = self.config
        # Bind first: a busy port fails before anything is built or written.
        compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}.get(
            config.compression or ""
        )
        server = grpc.aio.server(options=server_options(config), compression=compression)
        self._server = server
        address, target = bind_address(config)
        if config.tls_cert and config.tls_key:
            key, cert = await asyncio.to_thread(_read_pair, config.tls_key, config.tls_cert)
            credentials = grpc.ssl_server_credentials([(key, cert)])
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        if config.unix_socket:
            port = 0
        else:
            target = f"{target}:{port}"
        http_socket = bind_http(config)  # None without http_port
        routes = await self.open_service()
        assert self._research is not None  # opened just now
        assert self._engine is not None
        server.add_generic_rpc_handlers((routes,))
        self._health = _add_health_and_reflection(server)
        await server.start()
        self._http = await start_http(config, routes, http_socket, self._health)
        self._research.start()
        if self._health is not None:
            for name in ("", SERVICE):
                await self._health.report(name, True)
            await self._health.report_engine(serving=self._engine.serving)
            self._engine.watch_serving(self._health.report_engine)
        assert self._monitor is not None
        await self._monitor.start(self._health)
        metrics_port = self._metrics_port
        http_port = self._http.port if self._http else None
        self.info = ServerInfo(port, target, config, metrics_port, http_port)
        if config.allow_any_key:
            logger.warning("development mode: any non-empty API key is accepted")
        logger.info(
            "serving apex.v1.ApexService on %s (engine %s, model %s, data in %s, chats in %s)%s",
            target,
            config.engine,
            self._engine.model,
            config.data_dir,
            config.database.describe() if config.database else config.database_url,
            "" if metrics_port is None else f", metrics on {metrics_url(config, metrics_port)}",
        )
        return self.info

    async def open_service(self) -> ApexRoutes:
        """Everything but the grpc server: metrics, data folder, store, engine, index, routes.

        ``start()`` binds its port first, then calls this and serves the routes;
        the socketless test harness (tests/server/_socketless.py) serves them
        through grpc_testing instead. ``stop()`` closes what this opened.
        """
        config = self.config
        metrics = self._metrics = create_metrics(config)
        self._metrics_port = metrics.start()  # binds at once: a busy port fails here too

        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = DataDirectoryLock(config.data_dir)
        self._lock.acquire()  # before anything in it is opened
        # The database first: an unreachable one fails before the engine and index load.
        assert config.database is not None  # validate() refuses a URL that does not parse
        self._store = await open_store(config.database, wait_s=config.store_wait_s)
        self._monitor = StoreMonitor(self._store, metrics, timeout_s=config.store_wait_s)
        self._engine = create_engine(config)
        await self._engine.start()
        if isinstance(self._engine, ProcessEngine):
            metrics.watch_engine_process(self._engine)
        self._index = await asyncio.to_thread(SearchIndex, config.data_dir / INDEX_FILE)
        if config.default_corpus and await self._index.document_count() == 0:
            stats = await self._index.upsert(default_corpus())
            logger.info("built the default search corpus: %d documents", stats.added)

        policy = self._policy = CallPolicy(
            Authenticator(
                config.api_keys,
                secret=self._store.user_id_secret,
                allow_any_key=config.allow_any_key,
            ),
            knobs_enabled=config.knobs_enabled,
            metrics=metrics,
        )
        completions = ChatCompletions(
            self._engine,
            max_message_bytes=config.max_message_bytes,
            queue_size=config.queue_size,
            metrics=metrics,
        )
        self._research = ResearchJobs(
            self._store,
            self._index,
            completions,
            config.max_concurrent_jobs,
            lease_s=config.job_lease_s,
            renew_s=config.job_renew_interval,
            poll_s=config.job_poll_s,
        )
        servicer = ApexServicer(policy, completions, self._index, self._store, self._research)
        return ApexRoutes(servicer, policy)

    async def stop(self, grace: float | None = None, *, drain_delay: float | None = None) -> None:
        """Drain, then stop: what a replica behind a load balancer needs to lose no call.

        1. Health turns NOT_SERVING at once, so health-checking clients and load
           balancers send no new calls here.
        2. For ``drain_delay`` seconds (default: the config's) the server still serves
           everything, so calls already on their way are answered, not dropped.
        3. Then new calls are answered UNAVAILABLE without being started (a client
           retries them on another replica), until none arrived for a moment.
        4. Then the server stops accepting (GOAWAY) and calls in flight get what is left
           of ``grace`` seconds (default: the config's; step 3 spends at most half of
           it); it stops as soon as they are done (health watches, which never end by
           themselves, are ended first).
        5. Streams still answering then end UNAVAILABLE (`CallPolicy.hand_over`): a client
           resumes them elsewhere; grpc cancels what is left HANDOVER_S later.
        """
        if self._server is None and self._lock is None:
            return  # stopped already
        grace = self.config.grace_period_s if grace is None else grace
        drain_delay = self.config.drain_delay_s if drain_delay is None else drain_delay
        if self._health is not None:
            with contextlib.suppress(Exception):
                await self._health.enter_graceful_shutdown()
        if self._server is not None and self._policy is not None:
            if drain_delay > 0:
                logger.info("draining: NOT_SERVING, still serving for %.1f s", drain_delay)
                await asyncio.sleep(drain_delay)
            if grace > 0:  # stop(0) stops at once: calls in flight are cancelled anyway
                grace -= await turn_away_new_calls(self._policy, grace)
            if self._health is not None:
                self._health.close_watches()  # or they would hold the server for `grace`
            # stop(0): grpc cancels every call at once; nothing is left to hand over.
            handover = asyncio.get_running_loop().call_later(grace, self._policy.hand_over)
            http = self._http.stop(grace) if self._http else asyncio.sleep(0)
            await asyncio.gather(self._server.stop(grace + HANDOVER_S if grace > 0 else 0), http)
            handover.cancel()
            self._server = None
        await self._close_parts()
        logger.info("server stopped")

    async def _close_parts(self) -> None:
        if self._http is not None:
            await self._http.stop(0)
            self._http = None
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
        if self._monitor is not None:
            await self._monitor.close()
            self._monitor = None
        if self._research is not None:
            await self._research.close()
            self._research = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self._engine is not None:
            await self._engine.close()
            self._engine = None
        if self._index is not None:
            await asyncio.to_thread(self._index.close)
            self._index = None
        if self._metrics is not None:
            # Off the loop: the HTTP server's shutdown waits for its poll (up to 0.5 s).
            await asyncio.to_thread(self._metrics.close)
            self._metrics = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _read_pair(key: str, cert: str) -> tuple[bytes, bytes]:
    return Path(key).read_bytes(), Path(cert).read_bytes()


def _add_health_and_reflection(server: grpc.aio.Server) -> Any:
    """The standard health service (SERVING for "" and ApexService) and server reflection."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        from apex_grpc_server._runtime.health import DrainingHealth
    except ImportError:  # pragma: no cover - the server extra installs both
        logger.warning(
            "health and reflection are off: pip install 'apex-grpc[server]' to enable them"
        )
        return None
    servicer = DrainingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return servicer


async def serve(config: ServerConfig, *, ready: Callable[[ServerInfo], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (the CLI's main loop).

    SIGTERM (what Kubernetes and process managers send) drains first
    (`ApexServer.stop`); SIGINT (Ctrl-C at a terminal) skips the drain delay.
    ``ready`` is called once the server is serving, with where it listens. A
    stop still running drain + grace + EXIT_MARGIN_S after the signal ends the
    process (`shutdown.exit_watchdog`): the time the docs tell Kubernetes to allow.
    """
    server = ApexServer(config)
    info = await server.start()
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    installed = []
    watchdog = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, received.put_nowait, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    try:
        if ready is not None:
            ready(info)
        first = await received.get()
        drain = config.drain_delay_s if first == signal.SIGTERM else 0.0
        logger.info(
            "shutting down on %s (drain %.1f s, grace %.1f s)",
            first.name,
            drain,
            config.grace_period_s,
        )
        watchdog = exit_watchdog(drain + config.grace_period_s + EXIT_MARGIN_S)
        stopping = asyncio.ensure_future(server.stop(drain_delay=drain))
        second = asyncio.ensure_future(received.get())
        await asyncio.wait([stopping, second], return_when=asyncio.FIRST_COMPLETED)
        second.cancel()
        if not stopping.done():
            logger.info("%s again: stopping at once", first.name)
            stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await server.stop(0, drain_delay=0)  # after an error or a second signal: at once
        if watchdog is not None:
            watchdog.cancel()


class RunningServer:
    """A server running on its own event loop in a background thread.

    Use as a context manager, or call ``stop()``. ``port``, ``target`` and
    ``config`` say where it listens and how it was configured.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._info: ServerInfo | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._grace: float | None = None
        self._thread = threading.Thread(target=self._main, name="apex-grpc-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        self._raise_start_error()

    def _raise_start_error(self) -> None:
        if self._error is not None:
            self._thread.join()
            raise self._error

    @property
    def port(self) -> int:
        """The bound TCP port (0 for a unix socket)."""
        assert self._info is not None
        return self._info.port

    @property
    def metrics_port(self) -> int | None:
        """The bound port of the /metrics endpoint (None: ``metrics_port`` was not set)."""
        assert self._info is not None
        return self._info.metrics_port

    @property
    def http_port(self) -> int | None:
        """The bound port of the HTTP face (None: ``http_port`` was not set)."""
        assert self._info is not None
        return self._info.http_port

    @property
    def target(self) -> str:
        """What a client dials, e.g. ``127.0.0.1:54321`` or ``unix:/path/to/socket``."""
        assert self._info is not None
        return self._info.target

    def stop(self, grace: float | None = None) -> None:
        """Stop serving: in-flight calls get ``grace`` seconds (default: the config's)."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and self._thread.is_alive():
            self._grace = grace
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._info.target if self._info else "not serving"
        return f"RunningServer({where}, engine={self.config.engine!r})"

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = ApexServer(self.config)
        try:
            self._info = await server.start()
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await server.stop(self._grace)


def run_server(config: ServerConfig) -> RunningServer:
    """Start a server in a background thread; returns once it is serving.

    The result is a context manager: leaving the ``with`` block stops it.
    """
    return RunningServer(config)
