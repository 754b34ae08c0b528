"""Texts PostgreSQL cannot take as SQLite does (NUL, a megabyte of distinct words): alike on both.

NUL is refused by the server's validation, naming the field, whatever the store; a
long text is stored whole and searched in its first SEARCH_PREFIX_CHARS characters.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from _requests import chat_request

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._store import NewCompletion, Storage
from apex_grpc_server._store.migrations import SEARCH_PREFIX_CHARS

WORDS = 150_000
"""Distinct words of about 9 characters: 1.35 MB, over PostgreSQL's 1 MB tsvector limit."""


def word(n: int) -> str:
    return f"w{n:06d}x"


async def test_a_megabyte_of_distinct_words_is_stored_whole_and_searched_in_its_first_part(
    store: Storage,
) -> None:
    prompt = " ".join(word(n) for n in range(WORDS))
    assert len(prompt.encode()) > 1_300_000
    chat, row = await store.chats.create("u", "t", "apex", NewCompletion(prompt, "ok", "basic", {}))
    stored = await store.completions.get("u", row.id)
    assert stored is not None and stored.user_prompt_text == prompt  # whole
    early, late = word(10), word(WORDS - 10)  # within the first 64 Ki characters, and past them
    assert prompt.index(early) < SEARCH_PREFIX_CHARS < prompt.index(late)
    assert await store.chats.search("u", early) == [chat.id]
    assert await store.chats.search("u", late) == []
    # An edit to a long answer is indexed alike (SQLite's trigger, PostgreSQL's column).
    edited = await store.completions.update("u", row.id, text=f"{prompt} zebra")
    assert edited is not None and edited.completion_text.endswith(" zebra")
    assert await store.chats.search("u", "zebra") == []  # past the prefix of the answer
    assert await store.chats.search("u", early) == [chat.id]
    await store.chats.delete("u", [chat.id])  # the index forgets what it was given
    assert await store.chats.search("u", early) == []


@pytest.fixture
def stub_on(store_url: str | None, start_server: Any, connect: Any) -> pb_grpc.ApexServiceStub:
    """A stub on a server whose store is SQLite, then PostgreSQL."""
    return connect(start_server(database_url=store_url).target)


NUL = "a\x00b"


def _calls(chat_id: str, completion_id: str) -> list[tuple[str, str, Any]]:
    """Each call with NUL in one text the store would keep: the field it must name, the call."""
    create = pb.CreateChatAndCompletionRequest
    rename = pb.UpdateChatAttributesRequest
    edit = pb.UpdateCompletionAttributesRequest
    return [
        ("user_prompt", "CreateChatAndCompletion", create(user_prompt=NUL)),
        ("title", "CreateChatAndCompletion", create(user_prompt="p", title=NUL)),
        ("chat_type", "CreateChatAndCompletion", create(user_prompt="p", chat_type=NUL)),
        (
            "completion_type",
            "CreateChatAndCompletion",
            create(user_prompt="p", completion_type=NUL),
        ),
        (
            "user_prompt",
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id=chat_id, user_prompt=NUL),
        ),
        (
            "attributes['title']",
            "UpdateChatAttributes",
            rename(chat_id=chat_id, attributes={"title": NUL}),
        ),
        (
            "attributes['chat_type']",
            "UpdateChatAttributes",
            rename(chat_id=chat_id, attributes={"chat_type": NUL}),
        ),
        (
            "completion_text",
            "UpdateCompletionAttributes",
            edit(completion_id=completion_id, completion_text=NUL),
        ),
        (
            "user_prompt_text",
            "UpdateCompletionAttributes",
            edit(completion_id=completion_id, user_prompt_text=NUL),
        ),
        ("chat_type", "GetChatSessions", pb.GetChatSessionsRequest(chat_type=NUL)),
        (
            "search_term",
            "SearchChatIdsByPromptAndCompletionText",
            pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term=NUL),
        ),
        ("messages[0].content", "SubmitDeepResearcherJob", chat_request(NUL)),
        ("chat_id", "GetStoredChatCompletions", pb.GetStoredChatCompletionsRequest(chat_id=NUL)),
        ("completion_id", "GetChatCompletion", pb.GetChatCompletionRequest(completion_id=NUL)),
        ("chat_ids[1]", "DeleteChats", pb.DeleteChatsRequest(chat_ids=[chat_id, NUL])),
        (
            "completion_ids[0]",
            "DeleteCompletions",
            pb.DeleteCompletionsRequest(completion_ids=[NUL]),
        ),
    ]


def test_nul_in_any_stored_text_is_invalid_argument_naming_the_field_on_both_stores(
    stub_on: pb_grpc.ApexServiceStub, auth: Any
) -> None:
    created = stub_on.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="kept"), metadata=auth
    )
    calls = _calls(created.parsed_chat.id, created.parsed_completion.id)
    for field, method, request in calls:
        with pytest.raises(grpc.RpcError) as caught:
            getattr(stub_on, method)(request, metadata=auth)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert caught.value.details().startswith(f"{field}: must not contain NUL"), field
    # Nothing was written: the one chat, its one completion, as they were.
    sessions = stub_on.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth).chat_sessions
    assert [s.id for s in sessions] == [created.parsed_chat.id]
    rows = stub_on.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=created.parsed_chat.id), metadata=auth
    ).chat_completions
    assert [r.user_prompt_text for r in rows] == ["kept"]
