"""Authentication: bearer keys, constant-time checks, explicit dev mode."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import ServerConfig, run_server
from apex_grpc_server._rpc.api_keys import Authenticator, user_id_for_key
from apex_grpc_server._status import RpcAbort

pytestmark = pytest.mark.oldest

MISSING = "missing authorization metadata: send 'authorization: Bearer <api key>'"
MALFORMED = "malformed authorization metadata: expected 'Bearer <api key>'"
KEY = "auth-test-key-7d1c"
Metadata = tuple[tuple[str, str], ...]
REFUSED = {
    "no key": ((), MISSING),
    "wrong key": ((("authorization", "Bearer wrong-key"),), "invalid API key"),
    "other scheme": ((("authorization", f"Basic {KEY}"),), MALFORMED),
    "empty bearer": ((("authorization", "Bearer "),), MALFORMED),
}
SERVICE = pb.DESCRIPTOR.services_by_name["ApexService"]


@dataclass(frozen=True)
class Rows:
    """Ids of rows that exist for KEY's user, so a request that skipped auth would succeed."""

    chat_id: str
    completion_id: str
    job_id: str


def _chat() -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")])


# A valid request per RPC: with KEY each one succeeds (checked below), so a refusal can only
# come from the key. Keys are RPC names, checked against the proto's service.
REQUESTS: dict[str, Callable[[Rows], Message]] = {
    "ChatCompletion": lambda rows: _chat(),
    "ChatCompletionStream": lambda rows: _chat(),
    "WebRetrieval": lambda rows: pb.WebRetrievalRequest(search_query="zebra"),
    "SubmitDeepResearcherJob": lambda rows: _chat(),
    "GetDeepResearcherJob": lambda rows: pb.GetDeepResearcherJobRequest(job_id=rows.job_id),
    "GetChatSessions": lambda rows: pb.GetChatSessionsRequest(),
    "GetStoredChatCompletions": lambda rows: pb.GetStoredChatCompletionsRequest(
        chat_id=rows.chat_id
    ),
    "GetChatCompletion": lambda rows: pb.GetChatCompletionRequest(completion_id=rows.completion_id),
    "UpdateChatAttributes": lambda rows: pb.UpdateChatAttributesRequest(
        chat_id=rows.chat_id, attributes={"title": "renamed"}
    ),
    "DeleteChats": lambda rows: pb.DeleteChatsRequest(chat_ids=[rows.chat_id]),
    "CreateChatAndCompletion": lambda rows: pb.CreateChatAndCompletionRequest(user_prompt="hi"),
    "CreateCompletion": lambda rows: pb.CreateCompletionRequest(
        chat_id=rows.chat_id, user_prompt="and then?"
    ),
    "DeleteCompletions": lambda rows: pb.DeleteCompletionsRequest(
        completion_ids=[rows.completion_id]
    ),
    "SearchChatIdsByPromptAndCompletionText": lambda rows: (
        pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term="zebra")
    ),
    "UpdateCompletionAttributes": lambda rows: pb.UpdateCompletionAttributesRequest(
        completion_id=rows.completion_id, completion_text="edited"
    ),
    "GetCompletionsWithDeepResearcherEntry": lambda rows: empty_pb2.Empty(),
}


def test_the_request_table_is_the_whole_service() -> None:
    assert len(SERVICE.methods) == 16
    assert sorted(REQUESTS) == sorted(method.name for method in SERVICE.methods)


@pytest.fixture(scope="module")
def keyed_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.ApexServiceStub]:
    """A raw stub on a server of its own that accepts only KEY (the SDK always sends a key)."""
    config = ServerConfig(
        port=0, engine="echo", api_keys=frozenset({KEY}), data_dir=tmp_path_factory.mktemp("auth")
    )
    with run_server(config) as server, grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.ApexServiceStub(channel)


def _invoke(
    stub: pb_grpc.ApexServiceStub, method: MethodDescriptor, request: Message, metadata: Metadata
) -> Any:
    """Call `method` with `request`; a stream is read to its end."""
    result = getattr(stub, method.name)(request, metadata=metadata, timeout=10)
    return list(result) if method.server_streaming else result


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda method: method.name)
def test_every_rpc_refuses_a_missing_or_wrong_key(keyed_stub, method) -> None:
    auth = (("authorization", f"Bearer {KEY}"),)
    created = keyed_stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="zebra facts"), metadata=auth
    )
    job = keyed_stub.SubmitDeepResearcherJob(_chat(), metadata=auth)
    rows = Rows(created.parsed_chat.id, created.parsed_completion.id, job.job_id)
    request = REQUESTS[method.name](rows)
    assert request.DESCRIPTOR is method.input_type
    for case, (metadata, message) in REFUSED.items():
        with pytest.raises(grpc.RpcError) as caught:
            _invoke(keyed_stub, method, request, metadata)
        refusal = (caught.value.code(), caught.value.details())
        assert refusal == (grpc.StatusCode.UNAUTHENTICATED, message), case
    assert _invoke(keyed_stub, method, request, auth) is not None  # the request itself is fine


def test_scheme_is_case_insensitive(stub, chat, api_key) -> None:
    response = stub.ChatCompletion(chat("hi"), metadata=(("authorization", f"bearer {api_key}"),))
    assert response.choices[0].message.content


def test_one_of_several_keys(start_server, connect, chat) -> None:
    stub = connect(start_server(api_keys=frozenset({"key-a", "key-b"})).target)
    for key in ("key-a", "key-b"):
        assert stub.ChatCompletion(chat("hi"), metadata=(("authorization", f"Bearer {key}"),))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=(("authorization", "Bearer key-c"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_dev_mode_accepts_any_key_but_still_needs_one(start_server, connect, chat) -> None:
    stub = connect(start_server(api_keys=frozenset(), allow_any_key=True).target)
    assert stub.ChatCompletion(chat("hi"), metadata=(("authorization", "Bearer anything"),))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_keys_and_no_dev_mode_refuses_to_start(tmp_path) -> None:
    config = ServerConfig(port=0, engine="echo", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no API keys configured"):
        run_server(config)


def test_keys_never_appear_in_the_config_repr() -> None:
    config = ServerConfig(api_keys=frozenset({"s3cret-key"}), openai_api_key="upstream-s3cret")
    assert "s3cret" not in repr(config)


def test_user_ids_are_stable_distinct_and_do_not_reveal_the_key() -> None:
    # Keys sharing a long prefix, and non-ASCII: an id built from part of the key collides.
    keys = ["sk-live-0123456789abcdef", "sk-live-0123456789abcdeg", "clé-🔑-secrète", KEY]
    secret = b"a database's user-id secret"
    ids = [user_id_for_key(key, secret) for key in keys]
    assert len(set(ids)) == len(keys)
    for key, user_id in zip(keys, ids, strict=True):
        encoded = key.encode()
        for form in (key, encoded.hex(), base64.b64encode(encoded).decode(), key[:8]):
            assert form not in user_id, (key, user_id)
    # Stable across processes (the store keys rows by it), whatever the hash seed.
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from apex_grpc_server._rpc.api_keys import user_id_for_key as u;"
            ' print(*(u(k, b"a database\'s user-id secret") for k in sys.argv[1:]))',
            *keys,
        ],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == ids
    authenticator = Authenticator(frozenset({"k1"}), secret=secret)
    assert authenticator.authenticate("Bearer k1") == user_id_for_key("k1", secret)
    with pytest.raises(RpcAbort):
        authenticator.authenticate("Bearer k2")
