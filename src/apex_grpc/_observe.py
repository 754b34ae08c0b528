"""The one hook point for observing calls (tracing, metrics): an observer the transports ask.

Nothing here imports OpenTelemetry. `observer` is None until an
instrumentation installs one (``apex_grpc.instrumentation.otel``); the
transports read it once per call, so instrumenting affects clients made
before and after, and an uninstrumented call pays one global read and an
``is None`` test. Per chunk an uninstrumented stream pays nothing: the stream
adds chunks with the accumulator's own method unless an observation wraps it.

A call's observation is told, at well-defined moments: each failed attempt
that is retried (`retried`), each chunk of a stream (inside the wrapped
``add``), and the end, with the response or the error (`succeeded`,
`failed`), or `abandoned` for a stream closed before its end.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apex_grpc._requests import Prepared
    from apex_grpc._settings.client import ClientSettings
    from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class CallObservation(Protocol):
    """What an observer follows of one logical call (all its attempts)."""

    def current(self) -> AbstractContextManager[None]:
        """Make the call's span current while grpc is invoked (grpc's own spans nest in it);
        an exception leaving it ends the observation as failed."""

    def retried(self, attempt: int, code: str, delay: float) -> None:
        """Attempt number `attempt` failed with status `code`; the next starts in `delay` s
        (`code` is ``REFUSED_STREAM`` for a stream the server refused before seeing it)."""

    def succeeded(self, response: Any) -> None:
        """The call ended with this response (for a stream, the response its chunks make)."""

    def failed(self, error: BaseException) -> None:
        """The call ended with this error."""


class StreamObservation(CallObservation, Protocol):
    """A streamed call's observation: it also sees each chunk."""

    def wrap_add(
        self, add: Callable[[pb.ChatCompletionChunkResponse], None]
    ) -> Callable[[pb.ChatCompletionChunkResponse], None]:
        """The function the stream adds each chunk with (``add`` plus the observing)."""

    def abandoned(self) -> None:
        """The stream was closed or dropped before its end (a no-op once ended)."""

    def resumed(self, resume: int, code: str, characters: int) -> None:
        """The stream was cut with status `code` and resumes (its `resume`-th time) on
        another attempt, continuing from the `characters` received so far."""


class Observer(Protocol):
    """Starts the observation of each call (one span per logical call)."""

    def unary(self, prepared: Prepared[Any, Any], settings: ClientSettings) -> CallObservation:
        """A unary call is starting."""

    def stream(self, prepared: Prepared[Any, Any], settings: ClientSettings) -> StreamObservation:
        """A streamed chat completion is starting."""


observer: Observer | None = None
"""The installed observer; None: calls are not observed (the default)."""


def install(new: Observer | None) -> None:
    """Install `new` as the observer of every client's calls (None: stop observing)."""
    global observer
    observer = new
