"""The service layer without sockets: admission, per-call plumbing, chat, search, research.

Driven through grpc_testing (tests/server/_socketless.py) against the real
ApexRoutes, ApexServicer, store, echo engine and index, so `make mutate` can
run these per mutant of _rpc/servicer.py, _rpc/call_scope.py, _rpc/routes.py,
_wire/validation.py and _wire/convert.py. The stored-chat RPCs are in test_servicer_chats.py.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from _requests import chat_request as chat
from _socketless import OTHER_API_KEY
from google.protobuf import empty_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._metrics.recorder import Metrics
from apex_grpc_server._rpc.api_keys import INVALID, MALFORMED, MISSING
from apex_grpc_server._rpc.call_scope import SHUTTING_DOWN
from apex_grpc_server._wire import validation as validate

OK = grpc.StatusCode.OK
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ECHO_ANSWER = "hi" * 64  # the echo engine: the prompt repeated to 8 chunks of 16 characters


def refused(outcome: Any, code: grpc.StatusCode, details: str) -> None:
    """The call ended with `code` and exactly `details`, carrying its request id."""
    assert (outcome.code, outcome.details) == (code, details)
    assert outcome.responses == []
    assert REQUEST_ID.match(str(outcome.trailing["x-request-id"]))


# Every RPC is routed -------------------------------------------------------------


def test_every_rpc_of_the_service_is_routed_to_its_handler(apex: Any) -> None:
    """An empty request reaches each of the 16 handlers: none is UNIMPLEMENTED or UNKNOWN."""
    service = pb.DESCRIPTOR.services_by_name["ApexService"]
    codes = {}
    for method in service.methods:
        call = apex.stream if method.server_streaming else apex.unary
        codes[method.name] = call(method.name, b"").code
    assert len(codes) == 16
    assert codes == {
        "ChatCompletion": INVALID_ARGUMENT,
        "ChatCompletionStream": INVALID_ARGUMENT,
        "WebRetrieval": INVALID_ARGUMENT,
        "SubmitDeepResearcherJob": INVALID_ARGUMENT,
        "GetDeepResearcherJob": INVALID_ARGUMENT,
        "GetChatSessions": OK,
        "GetStoredChatCompletions": INVALID_ARGUMENT,
        "GetChatCompletion": INVALID_ARGUMENT,
        "UpdateChatAttributes": INVALID_ARGUMENT,
        "DeleteChats": INVALID_ARGUMENT,
        "CreateChatAndCompletion": INVALID_ARGUMENT,
        "CreateCompletion": INVALID_ARGUMENT,
        "DeleteCompletions": INVALID_ARGUMENT,
        "SearchChatIdsByPromptAndCompletionText": INVALID_ARGUMENT,
        "UpdateCompletionAttributes": INVALID_ARGUMENT,
        "GetCompletionsWithDeepResearcherEntry": OK,
    }


def test_a_method_of_another_service_is_not_routed(apex: Any) -> None:
    assert apex.routes.service(_Details("/apex.v1.Other/ChatCompletion", ())) is None


class _Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    def __init__(self, method: str, metadata: Any) -> None:
        self.method = method
        self.invocation_metadata = metadata


# Admission -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "details"),
    [
        ((), MISSING),
        ((("x-other", "1"), ("authorization", "Basic abc")), MALFORMED),
        ((("authorization", "Bearer not-a-key"),), INVALID),
    ],
)
def test_a_call_without_a_valid_key_is_unauthenticated(
    apex: Any, metadata: Any, details: str
) -> None:
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    refused(apex.unary("ChatCompletion", chat("hi"), metadata), unauthenticated, details)
    streamed = apex.stream("ChatCompletionStream", chat("hi"), metadata)
    refused(streamed, unauthenticated, details)
    assert streamed.initial == {}  # refused before the call was opened


def test_the_key_is_checked_before_the_body_is_parsed(apex: Any) -> None:
    outcome = apex.unary("ChatCompletion", b"\xff\xff", ())
    assert (outcome.code, outcome.details) == (grpc.StatusCode.UNAUTHENTICATED, MISSING)


def test_a_server_shutting_down_turns_new_calls_away_unstarted(apex: Any) -> None:
    apex.routes.policy.accepting = False
    refused(
        apex.unary("GetChatSessions", pb.GetChatSessionsRequest()),
        grpc.StatusCode.UNAVAILABLE,
        SHUTTING_DOWN,
    )
    refused(
        apex.stream("ChatCompletionStream", chat("hi")), grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN
    )
    assert apex.routes.policy.turned_away == 2


def test_each_key_is_its_own_user(apex: Any) -> None:
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="mine")
    ).ok()
    chat_id = created.parsed_chat.id
    other = (("authorization", f"bearer  {OTHER_API_KEY} "),)
    refused(
        apex.unary(
            "GetStoredChatCompletions", pb.GetStoredChatCompletionsRequest(chat_id=chat_id), other
        ),
        grpc.StatusCode.NOT_FOUND,
        f"chat {chat_id!r} not found",
    )
    assert (
        list(apex.unary("GetChatSessions", pb.GetChatSessionsRequest(), other).ok().chat_sessions)
        == []
    )
    mine = apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions
    assert [c.id for c in mine] == [chat_id]


# Per-call plumbing -----------------------------------------------------------------


def test_a_unary_call_carries_its_request_id_in_trailers_only(apex: Any) -> None:
    first = apex.unary("ChatCompletion", chat("hi"))
    second = apex.unary("ChatCompletion", chat("hi"))
    assert first.code is OK and first.initial == {}
    assert set(first.trailing) == {"x-request-id"}
    assert REQUEST_ID.match(str(first.trailing["x-request-id"]))
    assert first.trailing["x-request-id"] != second.trailing["x-request-id"]


def test_a_stream_sends_its_request_id_up_front_and_again_at_the_end(apex: Any) -> None:
    outcome = apex.stream("ChatCompletionStream", chat("hi"))
    assert outcome.code is OK
    assert outcome.initial == outcome.trailing
    assert set(outcome.trailing) == {"x-request-id"}


def test_the_interop_echo_headers_come_back(apex: Any) -> None:
    metadata = (
        *apex.authorization,
        ("x-grpc-test-echo-initial", "hello"),
        ("x-grpc-test-echo-trailing-bin", b"\x00\x01"),
    )
    outcome = apex.unary("ChatCompletion", chat("hi"), metadata)
    request_id = outcome.trailing["x-request-id"]
    assert outcome.initial == {"x-request-id": request_id, "x-grpc-test-echo-initial": "hello"}
    assert outcome.trailing == {
        "x-request-id": request_id,
        "x-grpc-test-echo-trailing-bin": b"\x00\x01",
    }
    failed = apex.unary("ChatCompletion", chat(), metadata)  # an error keeps the echoed trailer
    assert failed.trailing["x-grpc-test-echo-trailing-bin"] == b"\x00\x01"
    streamed = apex.stream("ChatCompletionStream", chat("hi"), metadata[:1] + metadata[2:])
    assert set(streamed.initial) == {"x-request-id"}
    assert set(streamed.trailing) == {"x-request-id", "x-grpc-test-echo-trailing-bin"}


@pytest.mark.parametrize("name", ["ChatCompletion", "ChatCompletionStream", "DeleteChats"])
def test_a_malformed_body_is_the_callers_invalid_argument(apex: Any, name: str) -> None:
    call = apex.stream if name == "ChatCompletionStream" else apex.unary
    outcome = call(name, b"\xff\xff\xff")
    request_type = "DeleteChatsRequest" if name == "DeleteChats" else "ChatCompletionRequest"
    assert outcome.code is INVALID_ARGUMENT
    assert outcome.details.startswith(
        f"request: the body is not a valid apex.v1.{request_type} message (Error parsing message"
    )
    assert outcome.details.endswith(")") and len(outcome.details) <= 80 + 200
    assert REQUEST_ID.match(str(outcome.trailing["x-request-id"]))


def test_an_unexpected_error_is_internal_and_names_the_request_id(apex: Any) -> None:
    apex.run(apex.store.close())  # every store call fails from now on
    outcome = apex.unary("GetChatSessions", pb.GetChatSessionsRequest())
    request_id = outcome.trailing["x-request-id"]
    assert outcome.code is grpc.StatusCode.INTERNAL
    assert outcome.details == f"internal server error (request id {request_id})"


def test_an_injected_failure_ends_the_call_with_its_status_and_pushback(apex: Any) -> None:
    metadata = (
        *apex.authorization,
        ("x-echo-fail-code", "RESOURCE_EXHAUSTED"),
        ("x-echo-fail-message", "slow down"),
        ("x-echo-pushback-ms", "250"),
        ("x-grpc-test-echo-trailing-bin", b"t"),
    )
    outcome = apex.unary("ChatCompletion", chat("hi"), metadata)
    assert (outcome.code, outcome.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    assert outcome.responses == []
    assert outcome.trailing == {
        "x-request-id": outcome.trailing["x-request-id"],
        "x-grpc-test-echo-trailing-bin": b"t",
        "grpc-retry-pushback-ms": "250",
    }
    plain = apex.unary("ChatCompletion", chat("hi"), metadata[:3])
    assert set(plain.trailing) == {"x-request-id"}  # no pushback asked, none sent


def test_a_stream_fails_after_the_messages_asked_for(apex: Any) -> None:
    fail = (("x-echo-fail-code", "UNAVAILABLE"),)
    after = (*apex.authorization, *fail, ("x-echo-fail-after", "3"))
    outcome = apex.stream("ChatCompletionStream", chat("hi"), after)
    assert outcome.code is grpc.StatusCode.UNAVAILABLE
    assert outcome.details == "failure injected by x-echo-fail-code"
    assert len(outcome.responses) == 3
    at_once = apex.stream("ChatCompletionStream", chat("hi"), (*apex.authorization, *fail))
    assert (at_once.code, at_once.responses) == (grpc.StatusCode.UNAVAILABLE, [])
    beyond = apex.stream(
        "ChatCompletionStream", chat("hi"), (*after[:-1], ("x-echo-fail-after", "20"))
    )
    assert (beyond.code, len(beyond.responses)) == (grpc.StatusCode.UNAVAILABLE, 8)


def test_knobs_are_ignored_when_the_server_has_them_off(socketless_server: Any) -> None:
    apex = socketless_server(test_knobs=False)
    metadata = (*apex.authorization, ("x-echo-fail-code", "UNAVAILABLE"))
    assert apex.unary("ChatCompletion", chat("hi"), metadata).code is OK


def test_calls_are_reported_to_the_metrics(apex: Any) -> None:
    ended: list[tuple[str, str]] = []

    class Recorder(Metrics):
        def call_ended(self, method: str, code: str, duration_s: float) -> None:
            ended.append((method, code))

    apex.routes.policy.metrics = Recorder()
    apex.unary("ChatCompletion", chat("hi"))
    apex.stream("ChatCompletionStream", chat())
    apex.unary("GetChatSessions", pb.GetChatSessionsRequest(), ())
    assert ended == [
        ("/apex.v1.ApexService/ChatCompletion", "OK"),
        ("/apex.v1.ApexService/ChatCompletionStream", "INVALID_ARGUMENT"),
        ("/apex.v1.ApexService/GetChatSessions", "UNAUTHENTICATED"),
    ]


# Chat ------------------------------------------------------------------------------


def test_chat_completion_answers_with_the_engine(apex: Any) -> None:
    response = apex.unary("ChatCompletion", chat(("system", "be brief"), "hi")).ok()
    assert response.model == "echo" and response.object == "chat.completion"
    [choice] = response.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content) == ("assistant", ECHO_ANSWER)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (10, 128)


def test_a_chat_stream_sends_one_chunk_per_delta(apex: Any) -> None:
    chunks = apex.stream("ChatCompletionStream", chat("hi")).responses
    assert len(chunks) == 8
    assert "".join(c.choices[0].delta.content for c in chunks) == ECHO_ANSWER
    assert [c.choices[0].delta.role for c in chunks] == ["assistant"] + [""] * 7
    assert [c.choices[0].finish_reason for c in chunks] == [""] * 7 + ["stop"]
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize(
    ("request_", "details"),
    [
        (chat(), "messages: must not be empty"),
        (chat(*["x"] * 1025), "messages: at most 1024 messages, got 1025"),
        (
            chat("a", ("robot", "b")),
            "messages[1].role: unknown role 'robot' (expected system, user, assistant)",
        ),
        (chat("a", ""), "messages[1].content: must not be empty"),
        (chat("a", uids=list(range(257))), "uids: at most 256 uids, got 257"),
        (chat("a", uids=[0, 255, 256]), "uids[2]: must be in [0, 255], got 256"),
        (chat("a", task="t" * 257), "task: must be at most 256 characters, got 257"),
        (chat("a", model="m" * 257), "model: must be at most 256 characters, got 257"),
        (
            chat("a", inference_mode="i" * 257),
            "inference_mode: must be at most 256 characters, got 257",
        ),
        (chat("a", timeout=0), "timeout: must be in [1, 3600], got 0"),
        (chat("a", timeout=3601), "timeout: must be in [1, 3600], got 3601"),
    ],
)
def test_chat_validation_names_the_field(apex: Any, request_: Any, details: str) -> None:
    refused(apex.unary("ChatCompletion", request_), INVALID_ARGUMENT, details)
    refused(apex.stream("ChatCompletionStream", request_), INVALID_ARGUMENT, details)
    refused(apex.unary("SubmitDeepResearcherJob", request_), INVALID_ARGUMENT, details)


# Web retrieval ---------------------------------------------------------------------


def test_web_retrieval_searches_the_index(socketless_server: Any) -> None:
    apex = socketless_server(default_corpus=True)
    request = pb.WebRetrievalRequest(search_query="grpc deadlines retries")
    results = apex.unary("WebRetrieval", request).ok().results
    assert len(results) == 3
    assert len({r.url for r in results}) == 3
    assert all(r.url and r.content and r.relevant for r in results)
    one = pb.WebRetrievalRequest(search_query="grpc", n_results=1, max_response_time=5, timeout=3)
    assert len(apex.unary("WebRetrieval", one).ok().results) == 1


@pytest.mark.parametrize(
    ("fields", "details"),
    [
        ({"search_query": " "}, "search_query: must not be empty"),
        ({"search_query": "q" * 4097}, "search_query: must be at most 4096 characters, got 4097"),
        ({"search_query": "q", "uids": [256]}, "uids[0]: must be in [0, 255], got 256"),
        ({"search_query": "q", "n_miners": 0}, "n_miners: must be in [1, 256], got 0"),
        ({"search_query": "q", "n_results": 101}, "n_results: must be in [1, 100], got 101"),
        (
            {"search_query": "q", "max_response_time": 0},
            "max_response_time: must be in [1, 3600], got 0",
        ),
        ({"search_query": "q", "timeout": 3601}, "timeout: must be in [1, 3600], got 3601"),
    ],
)
def test_web_retrieval_validation(apex: Any, fields: dict[str, Any], details: str) -> None:
    refused(apex.unary("WebRetrieval", pb.WebRetrievalRequest(**fields)), INVALID_ARGUMENT, details)


def test_web_retrieval_budget_is_the_smaller_of_its_limits() -> None:
    def budget(**fields: Any) -> float:
        return validate.web_retrieval(pb.WebRetrievalRequest(search_query="q", **fields)).budget_s

    assert (budget(), budget(max_response_time=7), budget(timeout=5)) == (20.0, 7.0, 5.0)
    assert budget(max_response_time=4, timeout=9) == 4.0


# Deep research ---------------------------------------------------------------------


def test_a_submitted_job_is_pending_and_listed_with_the_deep_research_entries(apex: Any) -> None:
    question = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="why?")])
    submitted = apex.unary("SubmitDeepResearcherJob", question).ok()
    assert submitted.status == "pending"
    assert RFC3339.match(submitted.created_at) and submitted.updated_at == submitted.created_at
    job = apex.unary(
        "GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(job_id=submitted.job_id)
    ).ok()
    assert (job.job_id, job.status, job.created_at, list(job.result)) == (
        submitted.job_id,
        "pending",
        submitted.created_at,
        [],
    )
    assert not job.HasField("error")
    entries = (
        apex.unary("GetCompletionsWithDeepResearcherEntry", empty_pb2.Empty()).ok().completions
    )
    [entry] = entries
    assert (entry.user_prompt_text, entry.completion_type) == ("why?", "deep_research")


@pytest.mark.parametrize(
    ("status", "error"), [("completed", None), ("failed", "boom"), ("failed", None)]
)
def test_a_finished_job_carries_its_chunks_and_error(
    apex: Any, status: str, error: str | None
) -> None:
    question = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="why?")])
    job_id = apex.unary("SubmitDeepResearcherJob", question).ok().job_id
    [claimed] = apex.run(apex.store.jobs.claim("test", 60.0, 1))
    for seq, chunk in enumerate(["one", "two"]):
        assert apex.run(apex.store.jobs.add_chunk(job_id, claimed.token, seq, chunk))
    assert apex.run(apex.store.jobs.finish(job_id, claimed.token, status, error=error, text="done"))
    job = apex.unary("GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(job_id=job_id)).ok()
    assert job.status == status
    assert [(c.seq_id, c.chunk) for c in job.result] == [(0, "one"), (1, "two")]
    if status == "failed":
        assert job.error == (error or "failed")
    else:
        assert not job.HasField("error")
