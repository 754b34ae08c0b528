"""The service layer without sockets: the stored-chat RPCs and idempotent writes.

See test_servicer.py; these run per mutant in `make mutate` too.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

OK = grpc.StatusCode.OK
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ANSWER = "hello " * 21 + "he"  # the echo engine: "hello " repeated to 128 characters


def fails(outcome: Any, code: grpc.StatusCode, details: str) -> None:
    assert (outcome.code, outcome.details) == (code, details)


def create(apex: Any, prompt: str = "hello ", **fields: Any) -> Any:
    request = pb.CreateChatAndCompletionRequest(user_prompt=prompt, **fields)
    return apex.unary("CreateChatAndCompletion", request).ok()


def with_key(apex: Any, key: str) -> Any:
    return (*apex.authorization, ("idempotency-key", key))


def test_create_chat_and_completion_stores_both(apex: Any) -> None:
    created = create(apex)
    chat, completion = created.parsed_chat, created.parsed_completion
    assert (chat.title, chat.chat_type) == ("hello", "apex")
    assert (completion.chat_id, completion.completion_type) == (chat.id, "basic")
    assert (completion.user_prompt_text, completion.completion_text) == ("hello ", ANSWER)
    assert chat.created_at.seconds > 1_700_000_000
    named = create(apex, "x", title="Mine", chat_type="notes", completion_type="deep")
    assert (named.parsed_chat.title, named.parsed_chat.chat_type) == ("Mine", "notes")
    assert named.parsed_completion.completion_type == "deep"
    sessions = apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions
    assert {s.id for s in sessions} == {chat.id, named.parsed_chat.id}
    notes = apex.unary("GetChatSessions", pb.GetChatSessionsRequest(chat_type="notes")).ok()
    [session] = notes.chat_sessions
    assert (session.id, session.title, session.chat_type) == (named.parsed_chat.id, "Mine", "notes")
    assert session.user_id and session.updated_at.seconds >= session.created_at.seconds


@pytest.mark.parametrize(
    ("fields", "details"),
    [
        ({"user_prompt": "  "}, "user_prompt: must not be empty"),
        (
            {"user_prompt": "a", "chat_type": "t" * 257},
            "chat_type: must be at most 256 characters, got 257",
        ),
        (
            {"user_prompt": "a", "completion_type": "c" * 257},
            "completion_type: must be at most 256 characters, got 257",
        ),
        ({"user_prompt": "a", "title": " "}, "title: must not be empty"),
        (
            {"user_prompt": "a", "title": "t" * 1025},
            "title: must be at most 1024 characters, got 1025",
        ),
    ],
)
def test_create_validation(apex: Any, fields: dict[str, Any], details: str) -> None:
    request = pb.CreateChatAndCompletionRequest(**fields)
    fails(apex.unary("CreateChatAndCompletion", request), INVALID_ARGUMENT, details)


def test_completions_of_a_chat_and_one_completion(apex: Any) -> None:
    created = create(apex)
    chat_id = created.parsed_chat.id
    added = (
        apex.unary(
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="abc", completion_type="t"),
        )
        .ok()
        .parsed_completion
    )
    assert (added.chat_id, added.user_prompt_text, added.completion_type) == (chat_id, "abc", "t")
    assert added.completion_text == "abc" * 42 + "ab"
    listed = (
        apex.unary("GetStoredChatCompletions", pb.GetStoredChatCompletionsRequest(chat_id=chat_id))
        .ok()
        .chat_completions
    )
    assert [c.id for c in listed] == [created.parsed_completion.id, added.id]
    assert [c.completion_text for c in listed] == [ANSWER, added.completion_text]
    assert all(c.chat_id == chat_id and c.completed_at.seconds > 0 for c in listed)
    one = apex.unary("GetChatCompletion", pb.GetChatCompletionRequest(completion_id=added.id)).ok()
    assert (one.id, one.user_prompt_text, one.completion_type, one.error_message) == (
        added.id,
        "abc",
        "t",
        "",
    )
    assert one.created_at == added.created_at


def test_unknown_ids_are_not_found(apex: Any) -> None:
    cases = [
        (
            "GetStoredChatCompletions",
            pb.GetStoredChatCompletionsRequest(chat_id="c1"),
            "chat 'c1' not found",
        ),
        (
            "GetChatCompletion",
            pb.GetChatCompletionRequest(completion_id="x1"),
            "completion 'x1' not found",
        ),
        ("GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(job_id="j1"), "job 'j1' not found"),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id="c2", user_prompt="a"),
            "chat 'c2' not found",
        ),
        ("DeleteChats", pb.DeleteChatsRequest(chat_ids=["c3"]), "chat 'c3' not found"),
        (
            "DeleteCompletions",
            pb.DeleteCompletionsRequest(completion_ids=["x2"]),
            "completion 'x2' not found",
        ),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c4", attributes={"title": "t"}),
            "chat 'c4' not found",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id="x3", completion_text="t"),
            "completion 'x3' not found",
        ),
    ]
    for name, request, details in cases:
        fails(apex.unary(name, request), NOT_FOUND, details)


@pytest.mark.parametrize(
    ("name", "request_", "details"),
    [
        (
            "GetStoredChatCompletions",
            pb.GetStoredChatCompletionsRequest(),
            "chat_id: must not be empty",
        ),
        (
            "GetChatCompletion",
            pb.GetChatCompletionRequest(completion_id="i" * 129),
            "completion_id: must be at most 128 characters, got 129",
        ),
        ("GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(), "job_id: must not be empty"),
        (
            "GetChatSessions",
            pb.GetChatSessionsRequest(chat_type="t" * 257),
            "chat_type: must be at most 256 characters, got 257",
        ),
        ("DeleteChats", pb.DeleteChatsRequest(), "chat_ids: must not be empty"),
        (
            "DeleteChats",
            pb.DeleteChatsRequest(chat_ids=["a", ""]),
            "chat_ids[1]: must not be empty",
        ),
        (
            "DeleteChats",
            pb.DeleteChatsRequest(chat_ids=["a"] * 1001),
            "chat_ids: at most 1000 ids, got 1001",
        ),
        ("DeleteCompletions", pb.DeleteCompletionsRequest(), "completion_ids: must not be empty"),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(user_prompt="a"),
            "chat_id: must not be empty",
        ),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id="c", user_prompt=" "),
            "user_prompt: must not be empty",
        ),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id="c", user_prompt="a", completion_type="c" * 257),
            "completion_type: must be at most 256 characters, got 257",
        ),
        (
            "SearchChatIdsByPromptAndCompletionText",
            pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term=" "),
            "search_term: must not be empty",
        ),
        (
            "SearchChatIdsByPromptAndCompletionText",
            pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term="s" * 4097),
            "search_term: must be at most 4096 characters, got 4097",
        ),
        ("UpdateChatAttributes", pb.UpdateChatAttributesRequest(), "chat_id: must not be empty"),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c"),
            "attributes: must not be empty (settable: title, chat_type)",
        ),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c", attributes={"title": "t", "colour": "red"}),
            "attributes: unknown attribute 'colour' (expected title, chat_type)",
        ),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c", attributes={"title": " "}),
            "attributes['title']: must not be empty",
        ),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c", attributes={"chat_type": " "}),
            "attributes['chat_type']: must not be empty",
        ),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id="c", attributes={"chat_type": "t" * 257}),
            "attributes['chat_type']: must be at most 256 characters, got 257",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(),
            "completion_id: must not be empty",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id="x"),
            "request: nothing to update (set completion_text, user_prompt_text or metadata)",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id="x", user_prompt_text=" "),
            "user_prompt_text: must not be empty",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id="x", metadata={"n": float("nan")}),
            "metadata['n']: numbers must be finite, got nan",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(
                completion_id="x", metadata={"big": "x" * 262_144}
            ),
            "metadata: at most 262144 bytes of JSON, got 262155",
        ),
    ],
)
def test_stored_chat_validation(apex: Any, name: str, request_: Any, details: str) -> None:
    fails(apex.unary(name, request_), INVALID_ARGUMENT, details)


def test_update_chat_attributes(apex: Any) -> None:
    chat_id = create(apex).parsed_chat.id
    request = pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"title": "New"})
    chat = apex.unary("UpdateChatAttributes", request).ok().chat
    assert (chat.id, chat.title, chat.chat_type) == (chat_id, "New", "apex")
    request = pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"chat_type": "work"})
    chat = apex.unary("UpdateChatAttributes", request).ok().chat
    assert (chat.title, chat.chat_type) == ("New", "work")


def test_delete_chats_and_completions(apex: Any) -> None:
    first, second = create(apex), create(apex, "two")
    request = pb.DeleteCompletionsRequest(completion_ids=[first.parsed_completion.id] * 2)
    assert apex.unary("DeleteCompletions", request).ok().success is True
    fails(
        apex.unary(
            "GetChatCompletion",
            pb.GetChatCompletionRequest(completion_id=first.parsed_completion.id),
        ),
        NOT_FOUND,
        f"completion {first.parsed_completion.id!r} not found",
    )
    ids = [first.parsed_chat.id, second.parsed_chat.id, first.parsed_chat.id]
    assert apex.unary("DeleteChats", pb.DeleteChatsRequest(chat_ids=ids)).ok().success is True
    assert list(apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions) == []


def test_search_finds_chats_by_prompt_and_answer(apex: Any) -> None:
    wanted = create(apex, "zebra crossing").parsed_chat.id
    create(apex, "giraffe")
    request = pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term="zebra")
    assert list(apex.unary("SearchChatIdsByPromptAndCompletionText", request).ok().chat_ids) == [
        wanted
    ]


def test_update_completion_attributes(apex: Any) -> None:
    completion_id = create(apex).parsed_completion.id
    metadata = struct_pb2.Struct()
    metadata.update({"score": 3, "tags": ["a", {"b": True}], "none": None, "text": "t"})
    request = pb.UpdateCompletionAttributesRequest(
        completion_id=completion_id,
        completion_text="edited",
        user_prompt_text="asked",
        metadata=metadata,
    )
    updated = apex.unary("UpdateCompletionAttributes", request).ok().completion
    assert (updated.id, updated.completion_text, updated.user_prompt_text) == (
        completion_id,
        "edited",
        "asked",
    )
    assert json_format.MessageToDict(updated.metadata) == {
        "score": 3,
        "tags": ["a", {"b": True}],
        "text": "t",
    }  # a null in the patch removes its key (a merge patch)
    only_text = pb.UpdateCompletionAttributesRequest(
        completion_id=completion_id, completion_text=""
    )
    again = apex.unary("UpdateCompletionAttributes", only_text).ok().completion
    assert (again.completion_text, again.user_prompt_text, again.metadata["score"]) == (
        "",
        "asked",
        3,
    )


def test_metadata_nested_deeper_than_a_reply_can_carry_is_refused(apex: Any) -> None:
    def nested(levels: int) -> Any:
        value: Any = "x"
        for _ in range(levels):
            value = [value]
        return value

    deepest = pb.UpdateCompletionAttributesRequest(completion_id="x", metadata={"d": nested(32)})
    fails(apex.unary("UpdateCompletionAttributes", deepest), NOT_FOUND, "completion 'x' not found")
    too_deep = pb.UpdateCompletionAttributesRequest(completion_id="x", metadata={"d": nested(33)})
    fails(
        apex.unary("UpdateCompletionAttributes", too_deep),
        INVALID_ARGUMENT,
        "metadata['d']" + "[0]" * 32 + ": nested more than 32 levels deep (objects or arrays"
        " within the top-level object): a reply could not carry it back",
    )


def test_a_write_that_would_leave_a_listing_unreadable_is_refused(socketless_server: Any) -> None:
    apex = socketless_server(max_message_bytes=500)
    chat_id = create(apex, "a").parsed_chat.id
    request = pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="b" * 200)
    outcome = apex.unary("CreateCompletion", request)
    assert outcome.code is INVALID_ARGUMENT
    assert re.fullmatch(
        r"request: after this write the chat's completions \(GetStoredChatCompletions\) would take"
        r" \d+ bytes, more than the server's 500-byte message limit \(--max-message-bytes\)",
        outcome.details,
    )


# Idempotent writes ---------------------------------------------------------------


def test_a_repeated_write_is_answered_once_and_marked_replayed(apex: Any) -> None:
    request = pb.CreateChatAndCompletionRequest(user_prompt="once")
    first = apex.unary("CreateChatAndCompletion", request, with_key(apex, "k-1"))
    again = apex.unary("CreateChatAndCompletion", request, with_key(apex, "k-1"))
    assert first.ok() == again.ok()
    assert "idempotent-replayed" not in first.trailing
    assert again.trailing["idempotent-replayed"] == "true"
    assert len(apex.unary("GetChatSessions", pb.GetChatSessionsRequest()).ok().chat_sessions) == 1
    other = pb.CreateChatAndCompletionRequest(user_prompt="other")
    fails(
        apex.unary("CreateChatAndCompletion", other, with_key(apex, "k-1")),
        INVALID_ARGUMENT,
        "idempotency-key: this key was used with a different CreateChatAndCompletion request:"
        " send a new key for a new request, the same request to retry",
    )
    delete = pb.DeleteChatsRequest(chat_ids=[first.response.parsed_chat.id])
    fails(
        apex.unary("DeleteChats", delete, with_key(apex, "k-1")),
        INVALID_ARGUMENT,
        "idempotency-key: this key was used for CreateChatAndCompletion, not DeleteChats:"
        " send a new key for a new request",
    )


def test_every_write_rpc_replays_a_repeat(apex: Any) -> None:
    created = create(apex)
    chat_id, completion_id = created.parsed_chat.id, created.parsed_completion.id
    writes = [
        ("CreateCompletion", pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="p")),
        (
            "UpdateChatAttributes",
            pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"title": "T"}),
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id=completion_id, completion_text="c"),
        ),
        (
            "SubmitDeepResearcherJob",
            pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="q")]),
        ),
        ("DeleteCompletions", pb.DeleteCompletionsRequest(completion_ids=[completion_id])),
        ("DeleteChats", pb.DeleteChatsRequest(chat_ids=[chat_id])),
    ]
    for index, (name, request) in enumerate(writes):
        first = apex.unary(name, request, with_key(apex, f"w-{index}"))
        again = apex.unary(name, request, with_key(apex, f"w-{index}"))
        assert (first.ok(), again.trailing["idempotent-replayed"]) == (again.ok(), "true"), name


def test_a_malformed_idempotency_key_is_refused(apex: Any) -> None:
    request = pb.CreateChatAndCompletionRequest(user_prompt="x")
    fails(
        apex.unary("CreateChatAndCompletion", request, with_key(apex, "k" * 129)),
        INVALID_ARGUMENT,
        "idempotency-key: must be 1 to 128 printable ASCII characters, got"
        f" {'k' * 40!r}... (129 characters)",
    )
