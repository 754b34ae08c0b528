"""The 11 stored-chat RPCs on SQLite: behaviour, per-key isolation, validation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import RunningServer, ServerConfig, run_server

pytestmark = pytest.mark.oldest

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = ServerConfig(
        port=0,
        engine="echo",
        allow_any_key=True,
        echo_chunks=2,
        echo_chunk_size=8,
        data_dir=tmp_path_factory.mktemp("chats"),
    )
    with run_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def apex(dev_server: RunningServer) -> Iterator[pb_grpc.ApexServiceStub]:
    with grpc.insecure_channel(dev_server.target) as channel:
        yield pb_grpc.ApexServiceStub(channel)


@pytest.fixture
def new_user() -> Callable[[], Metadata]:
    """Metadata for a fresh API key: a user with no chats yet."""
    return lambda: (("authorization", f"Bearer key-{uuid.uuid4().hex}"),)


@pytest.fixture
def user(new_user: Callable[[], Metadata]) -> Metadata:
    return new_user()


def create(
    apex, user, prompt: str = "Tell me about zebras", **fields
) -> pb.CreateChatAndCompletionResponse:
    request = pb.CreateChatAndCompletionRequest(user_prompt=prompt, **fields)
    return apex.CreateChatAndCompletion(request, metadata=user)


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_create_chat_and_completion(apex, user) -> None:
    response = create(apex, user, "Tell me about zebras in Africa please now, thanks")
    chat, completion = response.parsed_chat, response.parsed_completion
    assert chat.id
    assert chat.title == "Tell me about zebras in Africa please now,…"
    assert chat.chat_type == "apex"
    assert chat.created_at.seconds > 0
    assert completion.chat_id == chat.id
    assert completion.user_prompt_text == "Tell me about zebras in Africa please now, thanks"
    assert completion.completion_text == "Tell me about ze"  # echo: 2 chunks of 8
    assert completion.completion_type == "basic"
    stored = apex.GetChatCompletion(
        pb.GetChatCompletionRequest(completion_id=completion.id), metadata=user
    )
    assert stored.completion_text == completion.completion_text
    assert stored.HasField("completed_at")
    assert stored.error_message == ""


def test_explicit_title_and_types(apex, user) -> None:
    response = create(
        apex, user, "hi", title="My title", chat_type="gravity", completion_type="combined"
    )
    assert response.parsed_chat.title == "My title"
    assert response.parsed_chat.chat_type == "gravity"
    assert response.parsed_completion.completion_type == "combined"


def test_sessions_newest_first_and_filtered(apex, user) -> None:
    first = create(apex, user, "first").parsed_chat.id
    second = create(apex, user, "second", chat_type="gravity").parsed_chat.id
    sessions = apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=user).chat_sessions
    assert [s.id for s in sessions] == [second, first]
    gravity = apex.GetChatSessions(pb.GetChatSessionsRequest(chat_type="gravity"), metadata=user)
    assert [s.id for s in gravity.chat_sessions] == [second]
    # Adding a completion moves a chat to the top.
    apex.CreateCompletion(
        pb.CreateCompletionRequest(chat_id=first, user_prompt="more"), metadata=user
    )
    sessions = apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=user).chat_sessions
    assert [s.id for s in sessions] == [first, second]
    assert sessions[0].updated_at.ToMicroseconds() >= sessions[0].created_at.ToMicroseconds()
    assert len({s.user_id for s in sessions}) == 1


def test_create_completion_appends_in_order(apex, user) -> None:
    chat_id = create(apex, user, "one").parsed_chat.id
    added = apex.CreateCompletion(
        pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="two", completion_type="reasoning"),
        metadata=user,
    ).parsed_completion
    assert added.chat_id == chat_id
    assert added.completion_text == "twotwotwotwotwot"
    assert added.completion_type == "reasoning"
    listed = apex.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=user
    ).chat_completions
    assert [c.user_prompt_text for c in listed] == ["one", "two"]


def test_update_chat_attributes(apex, user) -> None:
    chat_id = create(apex, user).parsed_chat.id
    updated = apex.UpdateChatAttributes(
        pb.UpdateChatAttributesRequest(
            chat_id=chat_id, attributes={"title": "Renamed", "chat_type": "gravity"}
        ),
        metadata=user,
    ).chat
    assert (updated.id, updated.title, updated.chat_type) == (chat_id, "Renamed", "gravity")
    assert code_of(
        lambda: apex.UpdateChatAttributes(
            pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"colour": "red"}),
            metadata=user,
        )
    ) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "attributes: unknown attribute 'colour' (expected title, chat_type)",
    )
    assert (
        code_of(
            lambda: apex.UpdateChatAttributes(
                pb.UpdateChatAttributesRequest(chat_id=chat_id), metadata=user
            )
        )[0]
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code_of(
        lambda: apex.UpdateChatAttributes(
            pb.UpdateChatAttributesRequest(chat_id="abc", attributes={"title": "x"}), metadata=user
        )
    ) == (grpc.StatusCode.NOT_FOUND, "chat 'abc' not found")


def test_delete_chats_is_all_or_nothing(apex, user) -> None:
    kept = create(apex, user)
    gone = create(apex, user)
    assert code_of(
        lambda: apex.DeleteChats(
            pb.DeleteChatsRequest(chat_ids=[kept.parsed_chat.id, "nope"]), metadata=user
        )
    ) == (grpc.StatusCode.NOT_FOUND, "chat 'nope' not found")
    assert apex.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=kept.parsed_chat.id), metadata=user
    ).chat_completions
    assert apex.DeleteChats(
        pb.DeleteChatsRequest(chat_ids=[gone.parsed_chat.id]), metadata=user
    ).success
    assert (
        code_of(
            lambda: apex.GetChatCompletion(
                pb.GetChatCompletionRequest(completion_id=gone.parsed_completion.id), metadata=user
            )
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )
    ids = [
        s.id for s in apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=user).chat_sessions
    ]
    assert ids == [kept.parsed_chat.id]


def test_delete_completions(apex, user) -> None:
    response = create(apex, user)
    completion_id = response.parsed_completion.id
    assert code_of(
        lambda: apex.DeleteCompletions(
            pb.DeleteCompletionsRequest(completion_ids=["x"]), metadata=user
        )
    ) == (grpc.StatusCode.NOT_FOUND, "completion 'x' not found")
    assert apex.DeleteCompletions(
        pb.DeleteCompletionsRequest(completion_ids=[completion_id, completion_id]), metadata=user
    ).success
    listed = apex.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=response.parsed_chat.id), metadata=user
    )
    assert list(listed.chat_completions) == []


def test_search_prompts_and_answers(apex, user) -> None:
    zebra = create(apex, user, "Where do zebras live?").parsed_chat.id
    paint = create(apex, user, "How do cosmonauts paint?").parsed_chat.id
    apex.UpdateCompletionAttributes(
        pb.UpdateCompletionAttributesRequest(
            completion_id=create(apex, user, "unrelated").parsed_completion.id,
            completion_text="Zebras are striped horses.",
        ),
        metadata=user,
    )

    def search(term: str) -> list[str]:
        request = pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term=term)
        return list(apex.SearchChatIdsByPromptAndCompletionText(request, metadata=user).chat_ids)

    assert search("cosmonauts") == [paint]
    assert search("cosmo") == [paint]  # prefix
    found = search("zebras")
    assert zebra in found
    assert len(found) == 2
    assert search("zebras paint") == []  # every word must match
    for weird in ['"', "NEAR(", "*", "(a OR", "é", "🚀"]:
        search(weird)
    assert code_of(
        lambda: apex.SearchChatIdsByPromptAndCompletionText(
            pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term=" "), metadata=user
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "search_term: must not be empty")


def test_update_completion_attributes(apex, user) -> None:
    completion_id = create(apex, user, "prompt").parsed_completion.id
    metadata = struct_pb2.Struct()
    metadata.update({"rating": 5, "tags": ["a", "b"], "nested": {"k": True}})
    updated = apex.UpdateCompletionAttributes(
        pb.UpdateCompletionAttributesRequest(
            completion_id=completion_id,
            completion_text="new answer",
            user_prompt_text="new prompt",
            metadata=metadata,
        ),
        metadata=user,
    ).completion
    assert (updated.completion_text, updated.user_prompt_text) == ("new answer", "new prompt")
    assert dict(updated.metadata)["rating"] == 5
    patch = struct_pb2.Struct()
    patch.update({"rating": None, "note": "ok"})
    updated = apex.UpdateCompletionAttributes(
        pb.UpdateCompletionAttributesRequest(completion_id=completion_id, metadata=patch),
        metadata=user,
    ).completion
    assert set(updated.metadata.keys()) == {"tags", "nested", "note"}
    assert updated.completion_text == "new answer"
    assert (
        code_of(
            lambda: apex.UpdateCompletionAttributes(
                pb.UpdateCompletionAttributesRequest(completion_id=completion_id), metadata=user
            )
        )[0]
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_deep_research_entries_follow_metadata(apex, user) -> None:
    completion_id = create(apex, user).parsed_completion.id
    listed = apex.GetCompletionsWithDeepResearcherEntry(empty_pb2.Empty(), metadata=user)
    assert list(listed.completions) == []
    entry = struct_pb2.Struct()
    entry.update({"deep_researcher": {"job_id": "manual"}})
    apex.UpdateCompletionAttributes(
        pb.UpdateCompletionAttributesRequest(completion_id=completion_id, metadata=entry),
        metadata=user,
    )
    listed = apex.GetCompletionsWithDeepResearcherEntry(empty_pb2.Empty(), metadata=user)
    assert [c.id for c in listed.completions] == [completion_id]


def test_one_key_never_sees_another_keys_chats(apex, new_user) -> None:
    alice, bob = new_user(), new_user()
    response = create(apex, alice, "alice's secret plan")
    chat_id, completion_id = response.parsed_chat.id, response.parsed_completion.id
    assert list(apex.GetChatSessions(pb.GetChatSessionsRequest(), metadata=bob).chat_sessions) == []
    not_found = grpc.StatusCode.NOT_FOUND
    calls = [
        lambda: apex.GetStoredChatCompletions(
            pb.GetStoredChatCompletionsRequest(chat_id=chat_id), metadata=bob
        ),
        lambda: apex.GetChatCompletion(
            pb.GetChatCompletionRequest(completion_id=completion_id), metadata=bob
        ),
        lambda: apex.UpdateChatAttributes(
            pb.UpdateChatAttributesRequest(chat_id=chat_id, attributes={"title": "x"}), metadata=bob
        ),
        lambda: apex.DeleteChats(pb.DeleteChatsRequest(chat_ids=[chat_id]), metadata=bob),
        lambda: apex.CreateCompletion(
            pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="x"), metadata=bob
        ),
        lambda: apex.DeleteCompletions(
            pb.DeleteCompletionsRequest(completion_ids=[completion_id]), metadata=bob
        ),
        lambda: apex.UpdateCompletionAttributes(
            pb.UpdateCompletionAttributesRequest(completion_id=completion_id, completion_text="x"),
            metadata=bob,
        ),
    ]
    for call in calls:
        assert code_of(call)[0] == not_found
    search = pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term="secret")
    assert list(apex.SearchChatIdsByPromptAndCompletionText(search, metadata=bob).chat_ids) == []
    assert list(apex.SearchChatIdsByPromptAndCompletionText(search, metadata=alice).chat_ids) == [
        chat_id
    ]
    # Alice's data is untouched.
    assert apex.GetChatCompletion(
        pb.GetChatCompletionRequest(completion_id=completion_id), metadata=alice
    ).completion_text


@pytest.mark.parametrize(
    ("method", "request_", "message"),
    [
        (
            "CreateChatAndCompletion",
            pb.CreateChatAndCompletionRequest(),
            "user_prompt: must not be empty",
        ),
        (
            "CreateChatAndCompletion",
            pb.CreateChatAndCompletionRequest(user_prompt="x", title=""),
            "title: must not be empty",
        ),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(user_prompt="x"),
            "chat_id: must not be empty",
        ),
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id="c"),
            "user_prompt: must not be empty",
        ),
        (
            "GetStoredChatCompletions",
            pb.GetStoredChatCompletionsRequest(),
            "chat_id: must not be empty",
        ),
        ("GetChatCompletion", pb.GetChatCompletionRequest(), "completion_id: must not be empty"),
        ("DeleteChats", pb.DeleteChatsRequest(), "chat_ids: must not be empty"),
        (
            "DeleteChats",
            pb.DeleteChatsRequest(chat_ids=["a", ""]),
            "chat_ids[1]: must not be empty",
        ),
        ("DeleteCompletions", pb.DeleteCompletionsRequest(), "completion_ids: must not be empty"),
        ("GetDeepResearcherJob", pb.GetDeepResearcherJobRequest(), "job_id: must not be empty"),
        (
            "GetChatCompletion",
            pb.GetChatCompletionRequest(completion_id="x" * 129),
            "completion_id: must be at most 128 characters, got 129",
        ),
    ],
)
def test_invalid_arguments(apex, user, method, request_, message) -> None:
    assert code_of(lambda: getattr(apex, method)(request_, metadata=user)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )


@pytest.mark.parametrize(
    ("method", "request_", "message"),
    [
        (
            "CreateCompletion",
            pb.CreateCompletionRequest(chat_id="abc", user_prompt="x"),
            "chat 'abc' not found",
        ),
        (
            "GetStoredChatCompletions",
            pb.GetStoredChatCompletionsRequest(chat_id="abc"),
            "chat 'abc' not found",
        ),
        (
            "GetChatCompletion",
            pb.GetChatCompletionRequest(completion_id="abc"),
            "completion 'abc' not found",
        ),
        (
            "GetDeepResearcherJob",
            pb.GetDeepResearcherJobRequest(job_id="abc"),
            "job 'abc' not found",
        ),
        (
            "UpdateCompletionAttributes",
            pb.UpdateCompletionAttributesRequest(completion_id="abc", completion_text="x"),
            "completion 'abc' not found",
        ),
    ],
)
def test_unknown_ids(apex, user, method, request_, message) -> None:
    assert code_of(lambda: getattr(apex, method)(request_, metadata=user)) == (
        grpc.StatusCode.NOT_FOUND,
        message,
    )
