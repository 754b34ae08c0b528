"""Nothing is stored that a read cannot return (issue #19, item 3), with the real client.

A write that would push a listing past the server's message limit is refused
with INVALID_ARGUMENT naming the limit, and the listing stays readable;
metadata nested at the limit is readable through every reply that carries
it, one level deeper is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc_server._wire.convert import MAX_METADATA_DEPTH

pytestmark = pytest.mark.oldest

LIMIT = 64 * 1024
PROMPT = 20_000  # characters; the echo engine answers with as many: ~40 KB per completion


@pytest.fixture
def client(start_server: Callable[..., Any], api_key: str) -> Iterator[mc.ApexClient]:
    server = start_server(max_message_bytes=LIMIT, echo_chunks=1, echo_chunk_size=PROMPT)
    with mc.ApexClient(api_key=api_key, base_url=server.target, secure=False) as apex:
        yield apex


def test_a_completion_that_would_make_its_chat_unreadable_is_refused(client) -> None:
    made = client.chats.create("a" * PROMPT)
    chat_id = made.parsed_chat.id
    with pytest.raises(mc.InvalidArgumentError) as refused:
        client.chats.create_completion(chat_id, "b" * PROMPT)
    assert "GetStoredChatCompletions" in refused.value.details
    assert f"the server's {LIMIT}-byte message limit" in refused.value.details
    listed = client.chats.list_completions(chat_id).chat_completions
    assert [c.user_prompt_text[:1] for c in listed] == ["a"]  # readable, nothing added
    client.chats.create_completion(chat_id, "small")  # what still fits is stored


def test_an_entry_that_would_make_the_deep_research_listing_unreadable_is_refused(client) -> None:
    first = client.chats.create("a" * PROMPT).parsed_completion.id
    second = client.chats.create("b" * PROMPT).parsed_completion.id
    entry = {"deep_researcher": {"status": "completed"}}
    client.chats.update_completion(first, completion_metadata=entry)
    with pytest.raises(mc.InvalidArgumentError) as refused:
        client.chats.update_completion(second, completion_metadata=entry)
    assert "GetCompletionsWithDeepResearcherEntry" in refused.value.details
    assert f"the server's {LIMIT}-byte message limit" in refused.value.details
    listed = client.chats.list_deep_research_completions().completions
    assert [c.id for c in listed] == [first]
    assert "deep_researcher" not in dict(client.chats.get_completion(second).metadata)


def nested(objects: int, arrays: int) -> Any:
    """``objects`` levels of objects around ``arrays`` levels of arrays around a string."""
    value: Any = "bottom"
    for _ in range(arrays):
        value = [value]
    for _ in range(objects):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("objects", "arrays"), [(MAX_METADATA_DEPTH, 0), (0, MAX_METADATA_DEPTH), (30, 2)]
)
def test_metadata_at_the_depth_limit_reads_back_through_every_reply(
    client, objects: int, arrays: int
) -> None:
    assert MAX_METADATA_DEPTH == 32
    completion_id = client.chats.create("deep").parsed_completion.id
    deepest = nested(objects, arrays)  # levels below the metadata object: objects + arrays
    client.chats.update_completion(
        completion_id, completion_metadata={"deep_researcher": {"status": "x"}, "n": deepest}
    )
    from_get = client.chats.get_completion(completion_id)
    from_listing = client.chats.list_completions(from_get.chat_id).chat_completions[0]
    (from_deep,) = client.chats.list_deep_research_completions().completions
    for reply in (from_get, from_listing, from_deep):
        assert reply.metadata["n"] == mc_json(deepest)


# 31 objects and 2 arrays still parse as a request but not as a listing reply (the case
# the issue found); 33 arrays parse as both, yet exceed the documented limit.
@pytest.mark.parametrize(("objects", "arrays"), [(31, 2), (0, MAX_METADATA_DEPTH + 1)])
def test_metadata_one_level_deeper_is_refused(client, objects: int, arrays: int) -> None:
    completion_id = client.chats.create("deep").parsed_completion.id
    with pytest.raises(mc.InvalidArgumentError) as refused:
        client.chats.update_completion(
            completion_id, completion_metadata={"n": nested(objects, arrays)}
        )
    assert f"nested more than {MAX_METADATA_DEPTH} levels deep" in refused.value.details
    assert dict(client.chats.get_completion(completion_id).metadata) == {}
    client.chats.list_completions(client.chats.get_completion(completion_id).chat_id)


def mc_json(value: Any) -> Any:
    """``value`` as a Struct reads it back (its lists as protobuf's ListValue)."""
    from google.protobuf import struct_pb2

    holder = struct_pb2.Struct()
    holder.update({"v": value})
    return holder["v"]
