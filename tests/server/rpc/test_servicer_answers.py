"""The service layer without sockets: what reaches the engine and the index, and what comes back.

See test_servicer.py. These pin what the answers depend on: the
x-echo-* knobs of every RPC that asks the engine, the earlier turns a stored
chat's new prompt is sent with (`ApexServicer._answer`, seen by an engine that
records its requests), the sampling parameters' ranges, usage totals and a
search past its budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from _requests import chat_request as chat

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._engines import ChatEngine, ChatRequest, Delta, EchoEngine, Message
from apex_grpc_server._search.index import SearchTimeout

OK = grpc.StatusCode.OK
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
TWO_CHUNKS = (("x-echo-chunks", "2"),)
"""The echo engine's answer cut to 2 chunks of 16 characters."""


class RecordingEngine(ChatEngine):
    """The echo engine's answers; keeps every request and runs `before_answer` first."""

    kind = "recording"

    def __init__(self, before_answer: Callable[[], Awaitable[None]] | None = None) -> None:
        self.requests: list[ChatRequest] = []
        self._before_answer = before_answer
        self._echo = EchoEngine()

    @property
    def model(self) -> str:
        """The echo engine's name."""
        return self._echo.model

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Record `request`, then answer it as the echo engine does."""
        self.requests.append(request)
        if self._before_answer is not None:
            await self._before_answer()
        async for delta in self._echo.stream(request):
            yield delta


def recording(apex: Any, before_answer: Callable[[], Awaitable[None]] | None = None) -> Any:
    engine = RecordingEngine(before_answer)
    apex.servicer.completions.engine = engine
    return engine


# The knobs reach the engine --------------------------------------------------------


def test_every_rpc_that_asks_the_engine_applies_the_echo_knobs(apex: Any) -> None:
    knobs = (*apex.authorization, *TWO_CHUNKS)
    answer = apex.unary("ChatCompletion", chat("hi"), knobs).ok().choices[0].message.content
    assert answer == "hi" * 16
    streamed = apex.stream("ChatCompletionStream", chat("hi"), knobs).responses
    assert [c.choices[0].delta.content for c in streamed] == ["hi" * 8] * 2
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="ab"), knobs
    ).ok()
    assert created.parsed_completion.completion_text == "ab" * 16
    request = pb.CreateCompletionRequest(chat_id=created.parsed_chat.id, user_prompt="cd")
    added = apex.unary("CreateCompletion", request, knobs).ok().parsed_completion
    assert added.completion_text == "cd" * 16


def test_a_research_job_is_answered_with_the_knobs_it_was_submitted_with(apex: Any) -> None:
    job_id = (
        apex.unary("SubmitDeepResearcherJob", chat("why"), (*apex.authorization, *TWO_CHUNKS))
        .ok()
        .job_id
    )
    apex.run(_start(apex.servicer.research))
    request = pb.GetDeepResearcherJobRequest(job_id=job_id)
    deadline = time.monotonic() + 10
    job = apex.unary("GetDeepResearcherJob", request).ok()
    while job.status != "completed":
        assert job.status in ("pending", "running") and time.monotonic() < deadline, job
        time.sleep(0.02)
        job = apex.unary("GetDeepResearcherJob", request).ok()
    text = "".join(json.loads(chunk.chunk)[0]["content"] for chunk in job.result)
    assert len(text) == 32  # the echo engine's 2 chunks of 16, not its default 8


async def _start(research: Any) -> None:
    research.start()


# The history sent with a stored chat's new prompt ----------------------------------


def test_a_new_prompt_goes_to_the_engine_after_the_chats_last_six_turns(apex: Any) -> None:
    engine = recording(apex)
    chat_id = (
        apex.unary("CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="p0"))
        .ok()
        .parsed_chat.id
    )
    answers = ["p0" * 64]
    for turn in range(1, 8):
        request = pb.CreateCompletionRequest(chat_id=chat_id, user_prompt=f"p{turn}")
        answers.append(
            apex.unary("CreateCompletion", request).ok().parsed_completion.completion_text
        )
    first, second, *_, last = engine.requests
    assert first == ChatRequest((Message("user", "p0"),), fit_context=True)
    assert second == ChatRequest(
        (Message("user", "p0"), Message("assistant", answers[0]), Message("user", "p1")),
        fit_context=True,
    )
    turns = [(Message("user", f"p{n}"), Message("assistant", answers[n])) for n in range(1, 7)]
    assert last.messages == (*[m for turn in turns for m in turn], Message("user", "p7"))
    assert last.fit_context is True


def test_a_turn_without_an_answer_is_left_out_of_the_history(apex: Any) -> None:
    engine = recording(apex)
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="p0")
    ).ok()
    cleared = pb.UpdateCompletionAttributesRequest(
        completion_id=created.parsed_completion.id, completion_text=""
    )
    apex.unary("UpdateCompletionAttributes", cleared).ok()
    request = pb.CreateCompletionRequest(chat_id=created.parsed_chat.id, user_prompt="p1")
    apex.unary("CreateCompletion", request).ok()
    assert engine.requests[-1].messages == (Message("user", "p1"),)


def test_a_chat_deleted_while_its_answer_is_generated_is_not_found(apex: Any) -> None:
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="p0")
    ).ok()
    chat_id = created.parsed_chat.id
    [session] = apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions

    async def delete_the_chat() -> None:
        assert await apex.store.chats.delete(session.user_id, [chat_id]) == []

    recording(apex, delete_the_chat)
    request = pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="p1")
    outcome = apex.unary("CreateCompletion", request)
    assert (outcome.code, outcome.details) == (
        grpc.StatusCode.NOT_FOUND,
        f"chat {chat_id!r} not found",
    )


def test_a_new_completion_is_basic_unless_typed(apex: Any) -> None:
    chat_id = (
        apex.unary("CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="a"))
        .ok()
        .parsed_chat.id
    )
    request = pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="b")
    assert apex.unary("CreateCompletion", request).ok().parsed_completion.completion_type == "basic"


# Sampling parameters ---------------------------------------------------------------


def test_sampling_parameters_at_their_bounds_reach_the_engine(apex: Any) -> None:
    engine = recording(apex)
    for temperature, top_p, top_k in [(0.0, 1.0, 0.0), (2.0, 0.5, 1_000_000.0)]:
        params = pb.SamplingParameters(
            temperature=temperature, top_p=top_p, top_k=top_k, do_sample=True
        )
        apex.unary("ChatCompletion", chat("hi", sampling_parameters=params)).ok()
        sent = engine.requests[-1]
        assert (sent.temperature, sent.top_p, sent.top_k) == (temperature, top_p, int(top_k))


@pytest.mark.parametrize(
    ("params", "details"),
    [
        ({"temperature": 2.5}, "sampling_parameters.temperature: must be in [0, 2], got 2.5"),
        ({"temperature": -0.5}, "sampling_parameters.temperature: must be in [0, 2], got -0.5"),
        (
            {"temperature": float("nan")},
            "sampling_parameters.temperature: must be in [0, 2], got nan",
        ),
        ({"top_p": float("inf")}, "sampling_parameters.top_p: must be in [0, 1], got inf"),
        ({"top_k": 1e6 + 1}, "sampling_parameters.top_k: must be in [0, 1e+06], got 1000001.0"),
        ({"top_k": 2.5}, "sampling_parameters.top_k: must be a whole number, got 2.5"),
    ],
)
def test_sampling_parameters_out_of_range_are_refused(
    apex: Any, params: dict[str, float], details: str
) -> None:
    request = chat("hi", sampling_parameters=pb.SamplingParameters(**params))
    outcome = apex.unary("ChatCompletion", request)
    assert (outcome.code, outcome.details) == (INVALID_ARGUMENT, details)


# What comes back -------------------------------------------------------------------


def test_usage_carries_its_total(apex: Any) -> None:
    usage = apex.unary("ChatCompletion", chat("be brief", "hi")).ok().usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 128, 138)
    last = apex.stream("ChatCompletionStream", chat("hi")).responses[-1]
    assert (last.usage.prompt_tokens, last.usage.total_tokens) == (2, 130)


def test_a_search_past_its_budget_is_deadline_exceeded(apex: Any) -> None:
    class SlowIndex:
        """An index whose every query runs past its budget."""

        async def search(self, query: str, n_results: int, budget_s: float) -> list[Any]:
            raise SearchTimeout(f"query ran past its {budget_s:g} s budget")

    apex.servicer.index = SlowIndex()
    request = pb.WebRetrievalRequest(search_query="q", max_response_time=7)
    outcome = apex.unary("WebRetrieval", request)
    assert (outcome.code, outcome.details) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "max_response_time: query ran past its 7 s budget",
    )
    assert outcome.responses == []
