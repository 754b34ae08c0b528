"""Fixtures for the client's OpenTelemetry instrumentation: in-memory exporters, both clients."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import apex_grpc as mc
from apex_grpc.instrumentation.otel import ApexGrpcInstrumentor


@dataclass
class Telemetry:
    """What the instrumented clients exported, read back."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        """The finished spans, oldest first."""
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        """The one finished span (fails when there is not exactly one)."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[HistogramDataPoint]:
        """The histogram points of metric `name` (one per attribute set)."""
        data = self.reader.get_metrics_data()
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)  # type: ignore[arg-type]
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """ApexGrpcInstrumentor on, exporting to memory; off again after the test."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = ApexGrpcInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(exporter, reader, tracer_provider)
    finally:
        instrumentor.uninstrument()


Client = mc.ApexClient | mc.AsyncApexClient


@pytest.fixture(params=["sync", "async"])
async def connect(
    request: pytest.FixtureRequest, api_key: str
) -> AsyncIterator[Callable[..., Client]]:
    """``connect(target, **options)``: an ApexClient, then (second run) an AsyncApexClient."""
    made: list[Client] = []

    def make(target: str, **options: Any) -> Client:
        options.setdefault("api_key", api_key)
        cls = mc.ApexClient if request.param == "sync" else mc.AsyncApexClient
        client = cls(base_url=target, secure=False, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await settle(client.close())


async def settle(value: Any) -> Any:
    """`value`, awaited when the async client returned an awaitable."""
    return await value if inspect.isawaitable(value) else value


async def drain(stream: Any) -> list[Any]:
    """Every chunk of a sync or an async stream (or of the awaitable of one)."""
    stream = await settle(stream)
    if isinstance(stream, mc.AsyncChatCompletionStream):
        return [chunk async for chunk in stream]
    return list(stream)
