"""One CLIENT span per call, by the GenAI conventions, from both clients against real servers."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import apex_grpc as mc
from apex_grpc.testing import FakeApex, completion, error, search_results, stream

from .conftest import Telemetry, drain, settle

MESSAGES = [{"role": "user", "content": "hello there"}]
FAST = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)


def _server_attributes(span: Any, target: str) -> None:
    host, port = target.rsplit(":", 1)
    assert span.attributes["server.address"] == host
    assert span.attributes["server.port"] == int(port)


async def test_unary_chat_is_one_client_span_named_chat_model(
    telemetry: Telemetry, connect: Any, echo_target: str
) -> None:
    client = connect(echo_target)
    response = await settle(
        client.chat.completions.create(
            messages=MESSAGES,
            model="echo",
            seed=7,
            sampling_parameters={
                "temperature": 0.5,
                "top_p": 0.9,
                "top_k": 40,
                "max_new_tokens": 64,
            },
        )
    )
    span = telemetry.span()
    assert span.name == "chat echo"
    assert span.kind is SpanKind.CLIENT
    attributes = span.attributes or {}
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "apex"
    assert attributes["gen_ai.request.model"] == "echo"
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.top_k"] == 40
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.response.id"] == response.id
    assert attributes["gen_ai.response.model"] == response.model
    assert attributes["gen_ai.response.finish_reasons"] == (response.choices[0].finish_reason,)
    # our server reports usage, so the span and the token histogram carry it
    assert attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == response.usage.completion_tokens > 0
    assert "gen_ai.input.messages" not in attributes  # content is off by default
    assert "gen_ai.output.messages" not in attributes
    _server_attributes(span, echo_target)
    assert span.status.status_code is StatusCode.UNSET
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert duration.attributes["gen_ai.response.model"] == response.model
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": response.usage.prompt_tokens,
        "output": response.usage.completion_tokens,
    }
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_chat_without_a_model_is_named_after_the_responding_model(
    telemetry: Telemetry, connect: Any, echo_target: str
) -> None:
    client = connect(echo_target)
    response = await settle(client.chat.completions.create(messages=MESSAGES))
    span = telemetry.span()
    assert "gen_ai.request.model" not in (span.attributes or {})
    assert span.name == f"chat {response.model}"


GAP_S = 0.15
"""Seconds between a test stream's chunks."""


async def test_stream_times_its_chunks_and_reports_finish_reasons(
    telemetry: Telemetry, connect: Any
) -> None:
    with FakeApex() as fake:
        fake.on("ChatCompletionStream").reply(
            stream("one ", "two ", "three", first_delay=0.05, delay=GAP_S, finish_reason="length")
        )
        client = connect(fake.target, api_key=fake.api_key)
        chunks = await drain(client.chat.completions.create(messages=MESSAGES, stream=True))
    assert len(chunks) == 3
    span = telemetry.span()
    assert span.name == "chat apex-fake"  # named after the model that answered
    attributes = span.attributes or {}
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.response.id"] == "chatcmpl-fake"
    (first,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.count == 1 and first.sum >= 0.04
    (per_chunk,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == 2 and per_chunk.sum >= 2 * GAP_S * 0.9
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    # Timed when the first chunk came, not when the stream ended: both gaps come after it.
    assert duration.sum - first.sum >= 2 * GAP_S * 0.9, (first.sum, duration.sum)


async def test_a_stream_closed_early_ends_its_span(telemetry: Telemetry, connect: Any) -> None:
    with FakeApex() as fake:
        fake.on("ChatCompletionStream").reply(stream("a", "b", "c", delay=0.2))
        client = connect(fake.target, api_key=fake.api_key)
        chat = await settle(client.chat.completions.create(messages=MESSAGES, stream=True))
        if isinstance(chat, mc.AsyncChatCompletionStream):
            await chat.__anext__()
        else:
            next(chat)
        await settle(chat.close())
    span = telemetry.span()
    assert [e.name for e in span.events] == ["apex.stream.abandoned"]
    assert span.status.status_code is StatusCode.UNSET


async def test_web_search_is_a_retrieval_span(telemetry: Telemetry, connect: Any) -> None:
    with FakeApex() as fake:
        fake.on("WebRetrieval").reply(search_results(("https://a.example", "A")))
        client = connect(fake.target, api_key=fake.api_key)
        await settle(client.web_search.search("what is apex"))
    span = telemetry.span()
    assert span.name == "retrieval"
    assert span.kind is SpanKind.CLIENT
    assert (span.attributes or {})["gen_ai.operation.name"] == "retrieval"
    assert (span.attributes or {})["rpc.method"] == "WebRetrieval"


async def test_stored_chat_rpcs_carry_the_conversation_id(
    telemetry: Telemetry, connect: Any, echo_target: str
) -> None:
    client = connect(echo_target)
    created = await settle(client.chats.create("remember this"))
    chat_id = created.parsed_chat.id
    await settle(client.chats.list_completions(chat_id))
    create, listed = telemetry.spans()
    assert create.name == "apex.create_chat_and_completion"
    assert listed.name == "apex.get_stored_chat_completions"
    for span in (create, listed):
        assert span.kind is SpanKind.CLIENT
        assert (span.attributes or {})["gen_ai.conversation.id"] == chat_id
        assert (span.attributes or {})["gen_ai.operation.name"] == span.name


async def test_a_failure_sets_error_type_and_error_status(
    telemetry: Telemetry, connect: Any
) -> None:
    with FakeApex() as fake:
        fake.on("ChatCompletion").reply(error("PERMISSION_DENIED", "no access"))
        client = connect(fake.target, api_key=fake.api_key)
        with pytest.raises(mc.PermissionDeniedError):
            await settle(client.chat.completions.create(messages=MESSAGES, model="m"))
    span = telemetry.span()
    assert span.name == "chat m"
    assert span.status.status_code is StatusCode.ERROR
    assert "no access" in (span.status.description or "")
    assert (span.attributes or {})["error.type"] == "PermissionDeniedError"
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "PermissionDeniedError"


async def test_a_failed_stream_sets_error_type(telemetry: Telemetry, connect: Any) -> None:
    with FakeApex() as fake:
        fake.on("ChatCompletionStream").reply(stream("a", then=error("INTERNAL", "boom")))
        client = connect(fake.target, api_key=fake.api_key)
        with pytest.raises(mc.InternalServerError):
            await drain(client.chat.completions.create(messages=MESSAGES, stream=True))
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "InternalServerError"


@pytest.mark.parametrize("streamed", [False, True])
async def test_retries_are_span_events_of_one_span(
    telemetry: Telemetry, connect: Any, streamed: bool
) -> None:
    method = "ChatCompletionStream" if streamed else "ChatCompletion"
    with FakeApex() as fake:
        fake.on(method, times=2).reply(error(grpc.StatusCode.UNAVAILABLE))
        fake.on(method).reply(stream("ok") if streamed else completion("ok"))
        client = connect(fake.target, api_key=fake.api_key, retry=FAST, max_retries=3)
        call = client.chat.completions.create(messages=MESSAGES, stream=streamed)
        await (drain(call) if streamed else settle(call))
    span = telemetry.span()
    retries = [e for e in span.events if e.name == "apex.retry"]
    assert [e.attributes["apex.retry.attempt"] for e in retries] == [1, 2]
    assert {e.attributes["rpc.grpc.status"] for e in retries} == {"UNAVAILABLE"}
    assert all(e.attributes["apex.retry.delay"] >= 0 for e in retries)
    assert span.status.status_code is StatusCode.UNSET


async def test_our_span_is_current_while_grpc_runs(telemetry: Telemetry, connect: Any) -> None:
    """What a grpc instrumentation nests its spans under: the current span when grpc is called."""
    seen: list[Any] = []
    with FakeApex() as fake:
        fake.on("ChatCompletion").reply(completion("ok"))
        client = connect(fake.target, api_key=fake.api_key)
        _note_current_span(client, "ChatCompletion", seen)
        await settle(client.chat.completions.create(messages=MESSAGES))
    ours = telemetry.span()
    assert seen == [ours.context.span_id]


async def test_our_span_is_current_as_each_stream_attempt_opens(
    telemetry: Telemetry, connect: Any
) -> None:
    seen: list[Any] = []
    with FakeApex() as fake:
        fake.on("ChatCompletionStream", times=1).reply(error("UNAVAILABLE"))
        fake.on("ChatCompletionStream").reply(stream("ok"))
        client = connect(fake.target, api_key=fake.api_key, retry=FAST)
        _note_current_span(client, "ChatCompletionStream", seen)
        await drain(client.chat.completions.create(messages=MESSAGES, stream=True))
    ours = telemetry.span()
    assert seen == [ours.context.span_id] * 2


def _note_current_span(client: Any, rpc: str, seen: list[Any]) -> None:
    """Wrap the client's grpc multi-callable of `rpc` to note the span current when called."""
    connection = client._transport.pool().primary
    method = next(m for m in connection.callables if m.name == rpc)
    original = connection.callables[method]

    def noting(*args: Any, **kwargs: Any) -> Any:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return original(*args, **kwargs)

    connection.callables[method] = noting


async def test_deep_research_jobs_are_named_by_their_rpcs(
    telemetry: Telemetry, connect: Any, echo_target: str
) -> None:
    client = connect(echo_target)
    job = await settle(client.deep_research.submit(messages=MESSAGES, seed=3))
    await settle(client.deep_research.get(job.job_id))
    submit, get = telemetry.spans()
    assert submit.name == "apex.submit_deep_researcher_job"
    assert get.name == "apex.get_deep_researcher_job"
    assert (submit.attributes or {})["gen_ai.request.seed"] == 3
    for span in (submit, get):
        assert (span.attributes or {})["apex.deep_research.job_id"] == job.job_id
        assert (span.attributes or {})["gen_ai.operation.name"] == span.name


async def test_resumes_are_span_events_of_one_span(
    telemetry: Telemetry, connect: Any, echo_target: str
) -> None:
    """A stream cut twice mid-answer (UNAVAILABLE after every 3 chunks the echo server sends)
    resumes twice: one span, an ``apex.stream.resume`` event per resume, status unset."""
    client = connect(echo_target)
    cut = {"x-echo-fail-code": "UNAVAILABLE", "x-echo-fail-after": "3"}
    call = client.chat.completions.create(messages=MESSAGES, stream=True, metadata=cut)
    await drain(call)
    span = telemetry.span()
    resumes = [e for e in span.events if e.name == "apex.stream.resume"]
    assert [e.attributes["apex.stream.resume"] for e in resumes] == [1, 2]
    assert [e.attributes["apex.stream.resume.characters"] for e in resumes] == [48, 96]
    assert {e.attributes["rpc.grpc.status"] for e in resumes} == {"UNAVAILABLE"}
    assert span.status.status_code is StatusCode.UNSET
