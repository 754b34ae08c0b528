"""OpenTelemetry tracing and metrics of the client's calls, by the GenAI semantic conventions.

``ApexGrpcInstrumentor().instrument(tracer_provider=..., meter_provider=...)``
installs an observer that every `ApexClient` and `AsyncApexClient` (made
before or after) reports its calls to; ``uninstrument()`` removes it. It is
registered under the entry-point group ``opentelemetry_instrumentor`` (name
``apex_grpc``), so ``opentelemetry-instrument python app.py`` turns it on.

Each logical call (all its attempts) is one CLIENT span, current while grpc
runs (a grpc instrumentation's spans nest under it), named ``chat {model}``
for chat completions, ``retrieval`` for web search and by its operation name
for the rest (`apex_grpc.instrumentation._calls`). Retried attempts are
``apex.retry`` events. Metrics: ``gen_ai.client.operation.duration`` for every
call, ``gen_ai.client.operation.time_to_first_chunk`` and
``gen_ai.client.operation.time_per_output_chunk`` for streams,
``gen_ai.client.token.usage`` when the server reports usage. Prompts and
answers are recorded only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
    from opentelemetry.metrics import Histogram, Meter, get_meter
    from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
except ImportError as missing:  # pragma: no cover - what a base install says
    raise ImportError(
        f"apex_grpc.instrumentation.otel needs the otel extra ({missing}): "
        "pip install 'apex-grpc[otel]'"
    ) from missing

from apex_grpc import _observe
from apex_grpc._methods import SERVICE
from apex_grpc._requests import Prepared
from apex_grpc._settings.client import ClientSettings
from apex_grpc._version import __version__
from apex_grpc.instrumentation import _calls as c
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

__all__ = ["CAPTURE_CONTENT_ENV", "ApexGrpcInstrumentor"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The conventions' switch for recording prompts and answers (``true``; off by default)."""
_CAPTURE_VALUES = frozenset({"true", "span_only", "span_and_event"})

# The conventions' advised bucket boundaries.
_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
_CHUNK_SECONDS = [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
_TOKENS = [4.0**i for i in range(14)]
_HISTOGRAMS = (
    ("gen_ai.client.operation.duration", "s", "GenAI operation duration.", _SECONDS),
    (
        "gen_ai.client.operation.time_to_first_chunk",
        "s",
        "Time to receive the first chunk of a streamed response.",
        _SECONDS,
    ),
    (
        "gen_ai.client.operation.time_per_output_chunk",
        "s",
        "Time between consecutive chunks of a streamed response.",
        _CHUNK_SECONDS,
    ),
    ("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", _TOKENS),
)
"""The client metrics of the conventions: name, unit, description, advised buckets."""


class ApexGrpcInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces and measures apex-grpc client calls (OpenTelemetry's instrumentor interface)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """What must be installed: apex-grpc itself."""
        return ("apex-grpc",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"))
        _observe.install(_Observer(tracer, meter))

    def _uninstrument(self, **kwargs: Any) -> None:
        _observe.install(None)


class _Observer:
    """Starts a span per call and holds the instruments (an `apex_grpc._observe.Observer`)."""

    def __init__(self, tracer: Tracer, meter: Meter) -> None:
        self.tracer = tracer
        self.duration, self.first_chunk, self.per_chunk, self.tokens = (
            meter.create_histogram(
                name, unit=unit, description=text, explicit_bucket_boundaries_advisory=buckets
            )
            for name, unit, text, buckets in _HISTOGRAMS
        )

    def unary(self, prepared: Prepared[Any, Any], settings: ClientSettings) -> _Call:
        """A unary call is starting."""
        return _Call(self, prepared, settings, stream=False)

    def stream(self, prepared: Prepared[Any, Any], settings: ClientSettings) -> _StreamCall:
        """A streamed chat completion is starting."""
        return _StreamCall(self, prepared, settings, stream=True)


def _capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_VALUES


class _Call:
    """One logical call's span and measurements (an `apex_grpc._observe.CallObservation`)."""

    def __init__(
        self,
        observer: _Observer,
        prepared: Prepared[Any, Any],
        settings: ClientSettings,
        *,
        stream: bool,
    ) -> None:
        method, request, _ = prepared
        self.observer = observer
        self.operation = c.operation_name(method)
        requested = c.request_attributes(request, stream)
        self.model = str(requested.get(c.REQUEST_MODEL, ""))
        self.metric_attributes: dict[str, Any] = {
            c.OPERATION: self.operation,
            c.PROVIDER_NAME: c.PROVIDER,
            **c.server_attributes(settings.target),
        }
        if self.model:
            self.metric_attributes[c.REQUEST_MODEL] = self.model
        attributes = {
            **self.metric_attributes,
            "rpc.system": "grpc",
            "rpc.service": SERVICE,
            "rpc.method": method.name,
            **requested,
        }
        self.capture = _capture_content()
        if self.capture:
            prompt = c.input_messages(request)
            if prompt is not None:
                attributes[c.INPUT_MESSAGES] = prompt
        self.span = observer.tracer.start_span(
            c.span_name(self.operation, self.model), kind=SpanKind.CLIENT, attributes=attributes
        )
        self.started = time.monotonic()
        self.ended = False

    @contextmanager
    def current(self) -> Iterator[None]:
        """The span is current inside; an exception leaving it ends the call as failed."""
        try:
            with trace.use_span(self.span, record_exception=False, set_status_on_exception=False):
                yield
        except BaseException as error:
            self.failed(error)
            raise

    def retried(self, attempt: int, code: str, delay: float) -> None:
        """A failed attempt that will be retried: an ``apex.retry`` event."""
        self.span.add_event(
            "apex.retry",
            {"apex.retry.attempt": attempt, "rpc.grpc.status": code, "apex.retry.delay": delay},
        )

    def succeeded(self, response: Any) -> None:
        """The call ended with `response`: its attributes, usage and (opted in) answer."""
        if self.ended:
            return
        attributes = c.response_attributes(response)
        self.span.set_attributes(attributes)
        model = attributes.get(c.RESPONSE_MODEL)
        if model and not self.model:
            self.span.update_name(c.span_name(self.operation, model))
        if self.capture:
            answer = c.output_messages(response)
            if answer is not None:
                self.span.set_attribute(c.OUTPUT_MESSAGES, answer)
        extra = {c.RESPONSE_MODEL: model} if model else {}
        if isinstance(response, pb.ChatCompletionResponse) and response.HasField("usage"):
            usage = response.usage
            for kind, count in (
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ):
                self.observer.tokens.record(
                    count, {**self.metric_attributes, **extra, c.TOKEN_TYPE: kind}
                )
        self._end(extra)

    def failed(self, error: BaseException) -> None:
        """The call ended with `error`: ``error.type`` and an ERROR status."""
        if self.ended:
            return
        kind = type(error).__qualname__
        self.span.set_attribute(c.ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR, str(error)))
        self._end({c.ERROR_TYPE: kind})

    def _end(self, extra: dict[str, Any]) -> None:
        self.ended = True
        self.observer.duration.record(
            time.monotonic() - self.started, {**self.metric_attributes, **extra}
        )
        self.span.end()


class _StreamCall(_Call):
    """A streamed chat completion's span: also times its chunks."""

    last_chunk: float | None = None

    def wrap_add(
        self, add: Callable[[pb.ChatCompletionChunkResponse], None]
    ) -> Callable[[pb.ChatCompletionChunkResponse], None]:
        """`add`, then the time to the first chunk or since the previous one."""
        first: Histogram = self.observer.first_chunk
        per_chunk: Histogram = self.observer.per_chunk
        attributes = self.metric_attributes

        def observed(chunk: pb.ChatCompletionChunkResponse) -> None:
            add(chunk)
            now = time.monotonic()
            last = self.last_chunk
            if last is None:
                first.record(now - self.started, attributes)
            else:
                per_chunk.record(now - last, attributes)
            self.last_chunk = now

        return observed

    def resumed(self, resume: int, code: str, characters: int) -> None:
        """Cut and resumed: an ``apex.stream.resume`` event."""
        self.span.add_event(
            "apex.stream.resume",
            {
                "apex.stream.resume": resume,
                "rpc.grpc.status": code,
                "apex.stream.resume.characters": characters,
            },
        )

    def abandoned(self) -> None:
        """Closed before its end: an ``apex.stream.abandoned`` event, the span ends."""
        if not self.ended:
            self.span.add_event("apex.stream.abandoned")
            self._end({})
