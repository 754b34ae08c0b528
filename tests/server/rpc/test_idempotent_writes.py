"""Idempotent writes through real servers: a repeated key answers the first result, once.

Raw generated stubs send ``idempotency-key`` metadata (as the client does on
every write RPC), on SQLite and on PostgreSQL, and through two replicas of
one PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

BACKENDS = [pytest.param("sqlite", marks=pytest.mark.oldest), "postgresql"]


@pytest.fixture(params=BACKENDS)
def apex(
    request: pytest.FixtureRequest,
    start_server: Callable[..., Any],
    connect: Callable[[str], pb_grpc.ApexServiceStub],
) -> pb_grpc.ApexServiceStub:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return connect(start_server(database_url=url, allow_any_key=True).target)


def user() -> tuple[str, str]:
    return ("authorization", f"Bearer key-{uuid.uuid4().hex}")


def keyed(who: tuple[str, str], key: str) -> tuple[tuple[str, str], ...]:
    return (who, ("idempotency-key", key))


def replayed(call: grpc.Call) -> bool:
    return ("idempotent-replayed", "true") in tuple(call.trailing_metadata() or ())


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return str(caught.value.details())


def test_a_repeated_create_answers_the_first_chat_even_after_its_delete(apex) -> None:
    who = user()
    request = pb.CreateChatAndCompletionRequest(user_prompt="zebras")
    first, call = apex.CreateChatAndCompletion.with_call(request, metadata=keyed(who, "k1"))
    assert not replayed(call)
    again, call = apex.CreateChatAndCompletion.with_call(request, metadata=keyed(who, "k1"))
    assert replayed(call) and again == first
    listed = apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=(who,)).chat_sessions
    assert [chat.id for chat in listed] == [first.parsed_chat.id]
    # The user deletes the chat; a late retry of its create must not bring back a ghost.
    apex.DeleteChats(pb.DeleteChatsRequest(chat_ids=[first.parsed_chat.id]), metadata=(who,))
    late = apex.CreateChatAndCompletion(request, metadata=keyed(who, "k1"))
    assert late == first
    assert not apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=(who,)).chat_sessions
    # Without a key (other clients, the official SDK's wire format) each call writes.
    apex.CreateChatAndCompletion(request, metadata=(who,))
    apex.CreateChatAndCompletion(request, metadata=(who,))
    assert (
        len(apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=(who,)).chat_sessions) == 2
    )


def test_every_write_rpc_replays_its_first_answer(apex) -> None:
    who = user()
    made = apex.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="zebras"), metadata=(who,)
    )
    spare = apex.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="spare"), metadata=(who,)
    )
    chat_id, completion_id = made.parsed_chat.id, made.parsed_completion.id
    metadata = struct_pb2.Struct()
    metadata.update({"tag": "x"})
    rename = pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"title": "T"})
    tag = pb.UpdateCompletionAttributesRequest(completion_id=completion_id, metadata=metadata)
    research = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="r")])
    writes = [
        ("CreateCompletion", pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="more")),
        ("UpdateChatAttributes", rename),
        ("UpdateCompletionAttributes", tag),
        ("SubmitDeepResearcherJob", research),
        ("DeleteCompletions", pb.DeleteCompletionsRequest(completion_ids=[completion_id])),
        ("DeleteChats", pb.DeleteChatsRequest(chat_ids=[spare.parsed_chat.id])),
    ]
    for number, (method, request) in enumerate(writes):
        rpc = getattr(apex, method)
        first, call = rpc.with_call(request, metadata=keyed(who, f"w{number}"))
        assert not replayed(call), method
        again, call = rpc.with_call(request, metadata=keyed(who, f"w{number}"))
        assert replayed(call) and again == first, method
    completions = apex.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=(who,)
    ).chat_completions
    assert [c.user_prompt_text for c in completions] == ["more"]  # one added, one deleted
    entries = apex.GetCompletionsWithDeepResearcherEntry(empty_pb2.Empty(), metadata=(who,))
    assert len(entries.completions) == 1  # one job submitted


def test_a_key_reused_for_another_request_or_a_malformed_key_is_refused(apex) -> None:
    who = user()
    create = apex.CreateChatAndCompletion
    create(pb.CreateChatAndCompletionRequest(user_prompt="zebras"), metadata=keyed(who, "k"))
    other = pb.CreateChatAndCompletionRequest(user_prompt="lions")
    assert "idempotency-key: this key was used with a different CreateChatAndCompletion" in refused(
        lambda: create(other, metadata=keyed(who, "k"))
    )
    delete = pb.DeleteChatsRequest(chat_ids=["x"])
    assert "idempotency-key: this key was used for CreateChatAndCompletion, not DeleteChats" in (
        refused(lambda: apex.DeleteChats(delete, metadata=keyed(who, "k")))
    )
    assert "1 to 128 printable ASCII characters" in refused(
        lambda: create(other, metadata=keyed(who, "k" * 129))
    )
    create(other, metadata=keyed(who, "k" * 128))  # the longest key that is allowed
    # A key is the caller's own: another user may use the same one for anything.
    create(other, metadata=keyed(user(), "k"))
    listed = apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=(who,)).chat_sessions
    assert len(listed) == 2


def test_concurrent_first_attempts_through_two_replicas_write_once(
    start_server, connect, postgres_url
) -> None:
    stubs = [
        connect(start_server(database_url=postgres_url, allow_any_key=True).target)
        for _ in range(2)
    ]
    who = user()
    request = pb.CreateChatAndCompletionRequest(user_prompt="zebras")
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda n: stubs[n % 2].CreateChatAndCompletion(request, metadata=keyed(who, "k")),
                range(16),
            )
        )
    assert len({a.SerializeToString() for a in answers}) == 1
    for stub in stubs:
        listed = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=(who,)).chat_sessions
        assert [chat.id for chat in listed] == [answers[0].parsed_chat.id]
