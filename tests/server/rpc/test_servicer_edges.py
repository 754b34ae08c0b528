"""The service layer without sockets: limits at their edges, timestamps, the plumbing's own code.

See test_servicer.py. Each limit is tried on both sides of its
bound; each write that stores a completion is tried against the listing
check; the per-call wrappers (`unary`, `server_stream`) are applied here, at
test time, so what they build is checked and not only what they built at import.
"""

from __future__ import annotations

import logging
import re
import time
import types
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, timestamp_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._engines import ChatRequest, Message
from apex_grpc_server._metrics.recorder import Metrics
from apex_grpc_server._rpc.call_scope import CallContext, request_class, server_stream, unary
from apex_grpc_server._wire import convert
from apex_grpc_server._wire import validation as validate

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
SERVICE = "/apex.v1.ApexService"
TOO_LARGE = re.compile(
    r"request: after this write (the chat's completions \(GetStoredChatCompletions\)"
    r"|your deep-research entries \(GetCompletionsWithDeepResearcherEntry\)) would take \d+ bytes,"
    r" more than the server's 600-byte message limit \(--max-message-bytes\)"
)


def fails(outcome: Any, code: grpc.StatusCode, details: str) -> None:
    assert (outcome.code, outcome.details) == (code, details)


def question(content: str) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=content)])


# Limits at their edges -------------------------------------------------------------


def test_every_write_that_stores_a_completion_checks_the_listings(socketless_server: Any) -> None:
    apex = socketless_server(max_message_bytes=600)
    long = "x" * 500  # with the 128-character echo answer, past 600 bytes in a listing
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="a")
    ).ok()
    writes = [
        ("CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt=long)),
        ("SubmitDeepResearcherJob", question(long)),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(
                completion_id=created.parsed_completion.id, completion_text=long
            ),
        ),
    ]
    for name, request in writes:
        outcome = apex.unary(name, request)
        assert outcome.code is INVALID_ARGUMENT, name
        assert TOO_LARGE.fullmatch(outcome.details), (name, outcome.details)
    sessions = apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions
    assert [s.id for s in sessions] == [created.parsed_chat.id]  # nothing was stored


def test_a_metadata_patch_of_exactly_the_limit_is_accepted(apex: Any) -> None:
    def patch(length: int) -> pb.UpdateCompletionAttributesRequest:
        # {"big": "..."}: 11 characters of JSON around the string
        return pb.UpdateCompletionAttributesRequest(
            completion_id="x", metadata={"big": "x" * (length - 11)}
        )

    fails(
        apex.unary("UpdateCompletionAttributes", patch(262_144)),
        NOT_FOUND,
        "completion 'x' not found",
    )
    fails(
        apex.unary("UpdateCompletionAttributes", patch(262_145)),
        INVALID_ARGUMENT,
        "metadata: at most 262144 bytes of JSON, got 262145",
    )


def test_metadata_objects_count_as_levels_as_arrays_do(apex: Any) -> None:
    """Objects and arrays in turn, 32 levels below the top object and no deeper.

    (Objects alone cannot go that deep: protobuf's own parser refuses them first.)
    """

    def nested(levels: int) -> Any:
        value: Any = "x"
        for level in reversed(range(levels)):
            value = {"k": value} if level % 2 == 0 else [value]
        return value

    def update(metadata: Any) -> Any:
        request = pb.UpdateCompletionAttributesRequest(completion_id="x", metadata=metadata)
        return apex.unary("UpdateCompletionAttributes", request)

    fails(update({"top": nested(32)}), NOT_FOUND, "completion 'x' not found")
    path = "['top']" + "".join("['k']" if level % 2 == 0 else "[0]" for level in range(32))
    fails(
        update({"top": nested(33)}),  # the 33rd level is an object
        INVALID_ARGUMENT,
        f"metadata{path}: nested more than 32 levels deep (objects or arrays within the"
        " top-level object): a reply could not carry it back",
    )
    fails(
        update({"a": {"b": {"c": float("inf")}}}),
        INVALID_ARGUMENT,
        "metadata['a']['b']['c']: numbers must be finite, got inf",
    )


def test_metadata_nested_in_objects_is_stored_as_sent(apex: Any) -> None:
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="a")
    ).ok()
    metadata = {"a": {"b": {"c": [1.0, {"d": "e"}], "f": None, "g": False}}}
    request = pb.UpdateCompletionAttributesRequest(
        completion_id=created.parsed_completion.id, metadata=metadata
    )
    stored = apex.unary("UpdateCompletionAttributes", request).ok().completion.metadata
    assert json_format.MessageToDict(stored) == metadata


def test_a_thousand_ids_are_accepted(apex: Any) -> None:
    ids = [f"c{n}" for n in range(1000)]
    fails(
        apex.unary("DeleteChats", pb.DeleteChatsRequest(chat_ids=ids)),
        NOT_FOUND,
        "chat 'c0' not found",
    )


# Timestamps ------------------------------------------------------------------------


def test_timestamps_keep_their_microseconds_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # the server's zone must not matter
    time.tzset()
    try:
        assert convert.rfc3339(1_500_000) == "1970-01-01T00:00:01.500000Z"
        assert convert.rfc3339(1_743_701_513_123_456) == "2025-04-03T17:31:53.123456Z"
    finally:
        monkeypatch.undo()
        time.tzset()
    assert convert.timestamp(1_500_000) == timestamp_pb2.Timestamp(seconds=1, nanos=500_000_000)
    assert convert.timestamp(999_999) == timestamp_pb2.Timestamp(seconds=0, nanos=999_999_000)


def test_a_chat_session_and_a_job_carry_both_their_times(apex: Any) -> None:
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="a")
    ).ok()
    [session] = apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions
    assert session.created_at == created.parsed_chat.created_at
    assert session.updated_at == session.created_at
    submitted = apex.unary("SubmitDeepResearcherJob", question("why")).ok()
    job = apex.unary(
        "GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(job_id=submitted.job_id)
    ).ok()
    assert (job.created_at, job.updated_at) == (submitted.created_at, submitted.updated_at)
    assert job.updated_at.endswith("Z") and len(job.updated_at) == 27


# The plumbing's own code -----------------------------------------------------------


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the server's logger (it may not propagate to the root logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("apex_grpc_server")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_an_unexpected_error_is_logged_with_its_method_request_id_and_traceback(
    apex: Any, server_log: list[logging.LogRecord]
) -> None:
    apex.run(apex.store.close())
    outcome = apex.unary("GetChatSessions", pb.GetChatSessionsRequest())
    request_id = outcome.trailing["x-request-id"]
    [record] = [r for r in server_log if r.levelno == logging.ERROR]
    assert record.getMessage() == (
        f"{SERVICE}/GetChatSessions failed unexpectedly (request_id={request_id})"
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], Exception)


def test_a_request_class_is_the_methods_input_message() -> None:
    assert request_class("WebRetrieval") is pb.WebRetrievalRequest
    assert request_class("ChatCompletionStream") is pb.ChatCompletionRequest


class _Ended(Metrics):
    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def call_ended(self, method: str, code: str, duration_s: float) -> None:
        self.ended.append((method, code))


def test_the_wrappers_name_their_method_and_parse_its_request(apex: Any) -> None:
    """`unary` and `server_stream` applied now: the method, request and caller they hand on."""
    seen: list[Any] = []
    users: list[str] = []

    async def GetChatSessions(
        servicer: Any, request: pb.GetChatSessionsRequest, call: CallContext
    ) -> pb.GetChatSessionsResponse:
        seen.append(request)
        users.append(call.user_id)
        return pb.GetChatSessionsResponse()

    async def ChatCompletionStream(
        servicer: Any, request: pb.ChatCompletionRequest, call: CallContext
    ) -> AsyncGenerator[pb.ChatCompletionChunkResponse, None]:
        seen.append(request)
        users.append(call.user_id)
        yield pb.ChatCompletionChunkResponse(id="one")

    metrics = apex.routes.policy.metrics = _Ended()
    for fn, wrap in ((GetChatSessions, unary), (ChatCompletionStream, server_stream)):
        route = apex.routes.routes[f"{SERVICE}/{fn.__name__}"]
        route.behavior = types.MethodType(wrap(fn), apex.servicer)  # type: ignore[arg-type]
    sessions = pb.GetChatSessionsRequest(chat_type="t")
    assert apex.unary("GetChatSessions", sessions).ok() == pb.GetChatSessionsResponse()
    chunks = apex.stream("ChatCompletionStream", question("hi"))
    assert (chunks.code, [c.id for c in chunks.responses]) == (grpc.StatusCode.OK, ["one"])
    assert seen == [sessions, question("hi")]
    assert [type(r) for r in seen] == [pb.GetChatSessionsRequest, pb.ChatCompletionRequest]
    assert users == [apex.routes.policy.admit(apex.authorization)] * 2
    assert metrics.ended == [
        (f"{SERVICE}/GetChatSessions", "OK"),
        (f"{SERVICE}/ChatCompletionStream", "OK"),
    ]


# What a chat request becomes -------------------------------------------------------


def test_a_chat_request_becomes_the_engines_request_and_its_time_budget() -> None:
    plain = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")])
    assert validate.chat(plain) == validate.ChatCall(
        ChatRequest(
            (Message("user", "hi"),),
            temperature=0.7,
            top_p=0.95,
            top_k=0,
            max_new_tokens=None,
            seed=None,
            do_sample=True,
            json_format=False,
            model=None,
        ),
        None,
    )
    full = pb.ChatCompletionRequest(
        messages=[
            pb.ChatMessage(role="system", content="s"),
            pb.ChatMessage(role="user", content="u"),
        ],
        sampling_parameters=pb.SamplingParameters(
            temperature=1.5, top_p=0, top_k=3, max_new_tokens=7, do_sample=False
        ),
        seed=0,
        json_format=True,
        model="m",
        timeout=5,
    )
    assert validate.chat(full) == validate.ChatCall(
        ChatRequest(
            (Message("system", "s"), Message("user", "u")),
            temperature=0.0,  # do_sample false: greedy
            top_p=1.0,  # 0: unset
            top_k=3,
            max_new_tokens=7,
            seed=0,
            do_sample=False,
            json_format=True,
            model="m",
        ),
        5.0,
    )
    sampled = pb.SamplingParameters(temperature=1.5, do_sample=True)
    assert (
        validate.chat(
            pb.ChatCompletionRequest(messages=plain.messages, sampling_parameters=sampled)
        ).request.temperature
        == 1.5
    )


def test_chat_limits_are_inclusive(apex: Any) -> None:
    most = pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role="user", content="x")] * 1024,
        uids=list(range(256)),
        task="t" * 256,
    )
    assert validate.chat(most).request.messages[-1] == Message("user", "x")
    negative = pb.ChatCompletionRequest(
        messages=most.messages[:1],
        sampling_parameters=pb.SamplingParameters(max_new_tokens=-1),
    )
    fails(
        apex.unary("ChatCompletion", negative),
        INVALID_ARGUMENT,
        "sampling_parameters.max_new_tokens: must be >= 0, got -1",
    )


def test_returned_completions_carry_their_metadata_and_error(apex: Any) -> None:
    created = apex.unary(
        "CreateChatAndCompletion", pb.CreateChatAndCompletionRequest(user_prompt="a")
    ).ok()
    assert created.parsed_completion.HasField("metadata")  # an empty object, not absent
    job_id = apex.unary("SubmitDeepResearcherJob", question("why")).ok().job_id
    [claimed] = apex.run(apex.store.jobs.claim("test", 60.0, 1))
    assert apex.run(apex.store.jobs.finish(job_id, claimed.token, "failed", error="boom"))
    [entry] = (
        apex.unary("GetCompletionsWithDeepResearcherEntry", empty_pb2.Empty()).ok().completions
    )
    stored = apex.unary(
        "GetChatCompletion", pb.GetChatCompletionRequest(completion_id=entry.id)
    ).ok()
    assert stored.error_message == "boom"
