"""Server metrics: where the server reports what it does, and the recorder that records nothing.

The server holds one ``Metrics`` object, chosen once at start (`create_metrics` in
this package's ``__init__``): without ``metrics_port`` it is `NO_METRICS`, whose
methods do nothing, so a call pays a few empty method calls and
``prometheus_client`` is never imported. With it, `prometheus.PrometheusMetrics`
records into its own registry and serves it on ``http://HOST:PORT/metrics``. The
hooks are `_rpc.call_scope` (every RPC), `_chat.completions.ChatCompletions` (chat
completions, their first and later chunks, token usage), the engine's
`_chat.queue.EngineQueue` and its process (`_engines.process.ProcessEngine`), both
read when scraped, and `_runtime.store_monitor.StoreMonitor` (the database's reachability).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from apex_grpc_server._status import RpcAbort

if TYPE_CHECKING:
    from apex_grpc_server._engines import Usage


class QueueGauge(Protocol):
    """What the metrics read of an engine queue when scraped (`_chat.queue.EngineQueue` has it).

    A protocol, so the metrics, which the chat feature reports to, never import the
    chat feature back.
    """

    @property
    def concurrency(self) -> int:
        """How many calls the engine answers at once."""

    @property
    def waiting(self) -> int:
        """Calls waiting for a turn now."""

    @property
    def running(self) -> int:
        """Calls holding a turn now."""

    @property
    def refused(self) -> int:
        """Calls refused so far because the queue was full."""


class EngineProcessGauge(Protocol):
    """What the metrics read of an engine's process when scraped (`_engines.process.ProcessEngine`
    has it); a protocol for the reason `QueueGauge` is one."""

    @property
    def serving(self) -> bool:
        """Whether the engine's process answers calls now."""

    @property
    def restarts(self) -> int:
        """Engine processes started after the first."""

    @property
    def crashes(self) -> Mapping[str, int]:
        """Engine processes that ended unasked, by reason."""


class ChatTimer:
    """One chat completion's times and tokens, as an async context manager around it.

    This base records nothing. Leaving the ``async with`` block ends the
    completion (with the error that ended it, if any).
    """

    __slots__ = ()

    def chunk(self) -> None:
        """A streamed chunk is ready to send (the first one: time to first token)."""

    def usage(self, usage: Usage | None) -> None:
        """The engine reported the completion's token counts (None: it did not)."""

    def end(self, error: BaseException | None) -> None:
        """The completion ended, successfully or with ``error``."""

    async def __aenter__(self) -> ChatTimer:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(error)


NO_TIMER = ChatTimer()


class Metrics:
    """What the server reports to its metrics; this base records nothing and imports nothing."""

    __slots__ = ()

    def start(self) -> int | None:
        """Start serving the metrics; the bound port (None: metrics are off)."""
        return None

    def close(self) -> None:
        """Stop serving the metrics."""

    def call_started(self) -> None:
        """An RPC of ApexService began."""

    def call_ended(self, method: str, code: str, duration_s: float) -> None:
        """An RPC (``/apex.v1.ApexService/Name``) ended with the status ``code`` (its name)."""

    def chat(self, model: str) -> ChatTimer:
        """Time one chat completion answered by ``model``."""
        return NO_TIMER

    def continuation(self, model: str) -> None:
        """A chat completion continues an answer begun elsewhere (``x-apex-continue``)."""

    def watch_queue(self, queue: QueueGauge) -> None:
        """Report the engine queue's depth and refusals (read when scraped)."""

    def store_up(self, up: bool) -> None:
        """The database answered the server's ping (True) or could not be reached (False)."""

    def watch_engine_process(self, engine: EngineProcessGauge) -> None:
        """Report whether the engine's process is up, its restarts and crashes (when scraped)."""


NO_METRICS = Metrics()


def error_type(error: BaseException | None) -> str:
    """The low-cardinality ``error.type`` of how a call ended ("" for success).

    An RpcAbort's status code name; CANCELLED for a caller that went away;
    else the exception's class name.
    """
    if error is None:
        return ""
    if isinstance(error, RpcAbort):
        return error.code.name
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return type(error).__qualname__
