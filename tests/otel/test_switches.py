"""Turning the instrumentation on and off: content capture, uninstrument, the entry point, cost."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest

from apex_grpc import _observe
from apex_grpc.instrumentation.otel import CAPTURE_CONTENT_ENV, ApexGrpcInstrumentor
from apex_grpc.testing import FakeApex, completion, search_results, stream

from .conftest import Telemetry, drain, settle

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo"}]


@pytest.mark.parametrize("streamed", [False, True])
async def test_message_content_is_recorded_only_when_opted_in(
    telemetry: Telemetry, connect: Any, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    method = "ChatCompletionStream" if streamed else "ChatCompletion"
    with FakeApex() as fake:
        fake.on(method).reply(stream("Hi ", "you") if streamed else completion("Hi you"))
        client = connect(fake.target, api_key=fake.api_key)
        call = client.chat.completions.create(messages=MESSAGES, stream=streamed)
        await (drain(call) if streamed else settle(call))
        (off,) = telemetry.spans()
        assert "gen_ai.input.messages" not in (off.attributes or {})
        assert "gen_ai.output.messages" not in (off.attributes or {})

        monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
        call = client.chat.completions.create(messages=MESSAGES, stream=streamed)
        await (drain(call) if streamed else settle(call))
    _, on = telemetry.spans()
    attributes = on.attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "héllo"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hi you"}],
            "finish_reason": "stop",
        }
    ]


async def test_a_search_query_is_content_too(
    telemetry: Telemetry, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "TRUE")
    with FakeApex() as fake:
        fake.on("WebRetrieval").reply(search_results(("https://a.example", "A")))
        client = connect(fake.target, api_key=fake.api_key)
        await settle(client.web_search.search("secret query"))
    messages = json.loads(str((telemetry.span().attributes or {})["gen_ai.input.messages"]))
    assert messages[0]["parts"][0]["content"] == "secret query"


async def test_uninstrument_stops_tracing_clients_made_before_and_after(
    telemetry: Telemetry, connect: Any
) -> None:
    with FakeApex() as fake:
        fake.on("ChatCompletion").reply(completion("ok"))
        before = connect(fake.target, api_key=fake.api_key)
        ApexGrpcInstrumentor().uninstrument()
        assert _observe.observer is None
        await settle(before.chat.completions.create(messages=MESSAGES))
        after = connect(fake.target, api_key=fake.api_key)
        await settle(after.chat.completions.create(messages=MESSAGES))
        assert telemetry.spans() == []
        assert telemetry.points("gen_ai.client.operation.duration") == []

        # instrumenting again reaches a client made while it was off
        ApexGrpcInstrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        await settle(after.chat.completions.create(messages=MESSAGES))
    assert len(telemetry.spans()) == 1


def test_the_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    (entry,) = entry_points(group="opentelemetry_instrumentor", name="apex_grpc")
    assert entry.load() is ApexGrpcInstrumentor


_PROBE = """
import sys
import apex_grpc
from apex_grpc.testing import FakeApex, completion, stream
with FakeApex() as fake:
    fake.on("ChatCompletion").reply(completion("ok"))
    fake.on("ChatCompletionStream").reply(stream("o", "k"))
    with fake.client() as client:
        hi = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(messages=hi)
        client.chat.completions.create(messages=hi, stream=True).text()
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""


def test_import_apex_grpc_and_calls_load_no_opentelemetry_module() -> None:
    """With the extra installed but not instrumented, nothing of OpenTelemetry is imported."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
