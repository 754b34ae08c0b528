"""The Prometheus recorder behind ``--metrics-port``: its own registry, served on /metrics.

Imported only when metrics are on (`_metrics.create_metrics`). Names follow the
OpenTelemetry semantic conventions as Prometheus spells them (dots become
underscores, the unit is a suffix, counters end in ``_total``):
``gen_ai.server.request.duration`` is ``gen_ai_server_request_duration_seconds``.
Labels stay low-cardinality: the engine's model (never the request's free-form
``model``), the method, the status code, the error type. Bucket boundaries are
the ones the conventions advise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apex_grpc_server._metrics.recorder import (
    ChatTimer,
    EngineProcessGauge,
    Metrics,
    QueueGauge,
    error_type,
)

if TYPE_CHECKING:
    from apex_grpc_server._engines import Usage

OPERATION = "chat"
"""``gen_ai.operation.name`` of a chat completion."""
REQUEST_BUCKETS = tuple(0.01 * 2**i for i in range(14))
"""0.01 s doubling to 81.92 s."""
FIRST_TOKEN_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75),
    *(1.0, 2.5, 5.0, 7.5, 10.0),
)
PER_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
STATUS_CODES = {code.name: str(code.value[0]) for code in grpc.StatusCode}
"""``rpc.grpc.status_code`` is the code's number, as the conventions say."""
UNKNOWN_CODE = str(grpc.StatusCode.UNKNOWN.value[0])
MODEL_LABELS = ("gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model")


class PrometheusMetrics(Metrics):
    """Every server metric in one registry of its own, served over HTTP from `start`.

    Each server has its own registry (never the process-wide default), so
    several servers in one process report apart.
    """

    __slots__ = (
        "_http",
        "_model_series",
        "_rpc_series",
        "_thread",
        "continuations",
        "duration",
        "first_token",
        "host",
        "in_flight",
        "per_token",
        "port",
        "registry",
        "rpc_duration",
        "store",
        "tokens",
    )

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._http: WSGIServer | None = None
        self._rpc_series: dict[tuple[str, str], Histogram] = {}
        self._model_series: dict[str, _ModelSeries] = {}
        self._thread: threading.Thread | None = None
        self.rpc_duration = Histogram(
            "rpc_server_duration",
            "Duration of each apex.v1.ApexService call as the server saw it, by method and"
            " gRPC status code (its count is the number of calls).",
            ("rpc_system", "rpc_method", "rpc_grpc_status_code"),
            unit="seconds",
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "apex_server_calls_in_flight",
            "apex.v1.ApexService calls the server is handling now.",
            registry=registry,
        )
        self.duration = Histogram(
            "gen_ai_server_request_duration",
            "Duration of chat completions (ChatCompletion and ChatCompletionStream), from the"
            " call's start to its last chunk, queue wait included.",
            (*MODEL_LABELS, "error_type"),
            unit="seconds",
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "gen_ai_server_time_to_first_token",
            "Time from a streamed chat completion's start to its first chunk being ready to"
            " send, queue wait included.",
            MODEL_LABELS,
            unit="seconds",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.per_token = Histogram(
            "gen_ai_server_time_per_output_token",
            "Time between consecutive chunks of a streamed chat completion, after the first:"
            " the engines report chunks, not tokens, so this is per chunk (one token per"
            " chunk for the local engine).",
            MODEL_LABELS,
            unit="seconds",
            buckets=PER_TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "apex_server_tokens",
            "Tokens of chat completions whose engine reported usage: input (the prompt) and"
            " output (the answer).",
            (*MODEL_LABELS, "gen_ai_token_type"),
            registry=registry,
        )
        self.continuations = Counter(
            "apex_server_continuations",
            "Chat completions that continued an answer begun elsewhere (x-apex-continue: a"
            " client resuming a stream cut by a lost replica, connection or drain).",
            MODEL_LABELS,
            registry=registry,
        )

        self.store = Gauge(
            "apex_server_store_up",
            "1 while the database (SQLite or PostgreSQL) answers the server's ping, 0 while it"
            " cannot be reached (its calls are answered UNAVAILABLE meanwhile); the health"
            " service apex.v1.store says the same.",
            registry=registry,
        )

    def start(self) -> int:
        """Serve /metrics on host:port (0: a free port); the bound port."""
        try:
            self._http, self._thread = start_http_server(
                self.port, addr=self.host, registry=self.registry
            )
        except OSError as error:
            raise OSError(
                f"metrics_port: cannot listen on {self.host}:{self.port} for /metrics"
                f" ({error.strerror or error}); pick another --metrics-port (0 picks a free one)"
            ) from None
        self.port = self._http.server_port
        return self.port

    def close(self) -> None:
        """Stop the HTTP server and wait for its thread."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def call_started(self) -> None:
        """One more call in flight."""
        self.in_flight.inc()

    def call_ended(self, method: str, code: str, duration_s: float) -> None:
        """One fewer call in flight; its duration under its method and status code."""
        self.in_flight.dec()
        series = self._rpc_series.get((method, code))
        if series is None:  # labels() takes a lock and builds a key: once per pair
            series = self._rpc_series[method, code] = self.rpc_duration.labels(
                "grpc", method.lstrip("/"), STATUS_CODES.get(code, UNKNOWN_CODE)
            )
        series.observe(duration_s)

    def chat(self, model: str) -> ChatTimer:
        """A timer for one completion by ``model``, started now."""
        series = self._model_series.get(model)
        if series is None:
            series = self._model_series[model] = _ModelSeries(self, model)
        return _ChatTimer(series)

    def store_up(self, up: bool) -> None:
        """Set apex_server_store_up to 1 or 0."""
        self.store.set(1 if up else 0)

    def continuation(self, model: str) -> None:
        """One more continued answer of ``model``."""
        self.continuations.labels(OPERATION, model, model).inc()

    def watch_queue(self, queue: QueueGauge) -> None:
        """Report ``queue``'s waiting, running and refused calls whenever scraped."""
        self.registry.register(_QueueCollector(queue))

    def watch_engine_process(self, engine: EngineProcessGauge) -> None:
        """Report ``engine``'s process: up or not, restarts, crashes by reason (when scraped)."""
        self.registry.register(_EngineProcessCollector(engine))


class _ModelSeries:
    """The series of one model, looked up once (labels() per chunk would cost a lock each)."""

    __slots__ = ("duration", "first_token", "input_tokens", "labels", "output_tokens", "per_token")

    def __init__(self, metrics: PrometheusMetrics, model: str) -> None:
        self.labels = (OPERATION, model, model)
        self.duration = metrics.duration
        self.first_token = metrics.first_token.labels(*self.labels)
        self.per_token = metrics.per_token.labels(*self.labels)
        self.input_tokens = metrics.tokens.labels(*self.labels, "input")
        self.output_tokens = metrics.tokens.labels(*self.labels, "output")


class _ChatTimer(ChatTimer):
    __slots__ = ("_last", "_series", "_started")

    def __init__(self, series: _ModelSeries) -> None:
        self._series = series
        self._started = time.perf_counter()
        self._last = 0.0  # when the previous chunk was ready; 0.0 before the first

    def chunk(self) -> None:
        now = time.perf_counter()
        if self._last:
            self._series.per_token.observe(now - self._last)
        else:
            self._series.first_token.observe(now - self._started)
        self._last = now

    def usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self._series.input_tokens.inc(usage.prompt_tokens)
            self._series.output_tokens.inc(usage.completion_tokens)

    def end(self, error: BaseException | None) -> None:
        series = self._series
        series.duration.labels(*series.labels, error_type(error)).observe(
            time.perf_counter() - self._started
        )


class _QueueCollector(Collector):
    """The engine queue's gauges and refusal count, read from the queue at each scrape."""

    def __init__(self, queue: QueueGauge) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        queue = self.queue
        yield GaugeMetricFamily(
            "apex_server_queue_waiting", "Calls waiting for a turn on the engine.", queue.waiting
        )
        yield GaugeMetricFamily(
            "apex_server_queue_running",
            f"Calls holding one of the engine's {queue.concurrency} turns.",
            queue.running,
        )
        yield CounterMetricFamily(
            "apex_server_queue_refused",
            "Calls refused with RESOURCE_EXHAUSTED because the engine's queue was full.",
            queue.refused,
        )


class _EngineProcessCollector(Collector):
    """The engine process's state and its restart and crash counts, read at each scrape."""

    def __init__(self, engine: EngineProcessGauge) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        yield GaugeMetricFamily(
            "apex_server_engine_up",
            "1 while the chat engine's process answers calls, 0 while it is down or restarting.",
            int(engine.serving),
        )
        yield CounterMetricFamily(
            "apex_server_engine_restarts",
            "Chat engine processes started after the first (after crashes or failed starts).",
            engine.restarts,
        )
        crashes = CounterMetricFamily(
            "apex_server_engine_crashes",
            "Chat engine processes that ended without being asked to, by reason: the signal"
            " that killed them (SIGSEGV, SIGKILL, ...), exit_N, or start_failed.",
            labels=("reason",),
        )
        for reason, count in sorted(engine.crashes.items()):
            crashes.add_metric((reason,), count)
        yield crashes
