"""One service, two faces: the same calls over gRPC, Connect JSON, Connect binary and gRPC-Web.

Each case makes one call over gRPC (the generated stub) and over each protocol
of the HTTP face (`_http_calls`), and compares what came back: the messages
(without the fields that differ by nature: ids and times), the status code and
its message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import httpx
import pytest
from _http_calls import PROTOCOLS, Answer, call
from google.protobuf.message import Message

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

VOLATILE = ("id", "created", "created_at", "updated_at", "chat_id", "completion_id")


@dataclass(frozen=True)
class Case:
    """One call: its RPC, request, reply type, and the metadata it is sent with."""

    method: str
    request: Message
    reply: type[Message]
    streaming: bool = False
    metadata: tuple[tuple[str, str], ...] = ()
    keyed: bool = True


def chat(text: str, **fields: object) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)], **fields)  # type: ignore[arg-type]


CASES = {
    "unary answer": Case("ChatCompletion", chat("parity"), pb.ChatCompletionResponse),
    "streamed answer": Case(
        "ChatCompletionStream", chat("stream"), pb.ChatCompletionChunkResponse, streaming=True
    ),
    "wrong key": Case("ChatCompletion", chat("x"), pb.ChatCompletionResponse, keyed=False),
    "wrong key, stream": Case(
        "ChatCompletionStream", chat("x"), pb.ChatCompletionChunkResponse, True, keyed=False
    ),
    "bad field": Case("ChatCompletion", pb.ChatCompletionRequest(), pb.ChatCompletionResponse),
    "bad field, stream": Case(
        "ChatCompletionStream", chat("x", uids=[-1]), pb.ChatCompletionChunkResponse, True
    ),
    "not found": Case(
        "GetChatCompletion",
        pb.GetChatCompletionRequest(completion_id="nope"),
        pb.StoredChatCompletion,
    ),
    "failure mid-stream": Case(
        "ChatCompletionStream",
        chat("fail"),
        pb.ChatCompletionChunkResponse,
        True,
        (("x-echo-fail-code", "UNAVAILABLE"), ("x-echo-fail-after", "2")),
    ),
    "pushback": Case(
        "ChatCompletion",
        chat("busy"),
        pb.ChatCompletionResponse,
        metadata=(("x-echo-fail-code", "RESOURCE_EXHAUSTED"), ("x-echo-pushback-ms", "700")),
    ),
    "empty request": Case(
        "GetChatSessions", pb.GetChatSessionsRequest(), pb.GetChatSessionsResponse
    ),
}


def comparable(message: Message) -> Message:
    """`message` without the fields that differ between two calls by nature."""
    copy = type(message)()
    copy.CopyFrom(message)
    _clear(copy)
    return copy


def _clear(message: Message) -> None:
    for descriptor, value in message.ListFields():
        if descriptor.name in VOLATILE:
            message.ClearField(descriptor.name)
        elif isinstance(value, Message):
            _clear(value)
        elif descriptor.message_type is not None:  # a repeated message field
            for item in value:
                if isinstance(item, Message):
                    _clear(item)


def over_grpc(stub: pb_grpc.ApexServiceStub, case: Case, key: str) -> Answer:
    method: Callable[..., object] = getattr(stub, case.method)
    metadata = (("authorization", f"Bearer {key}"), *case.metadata)
    answer = Answer()
    try:
        if case.streaming:
            for message in method(case.request, metadata=metadata, timeout=30):  # type: ignore[attr-defined]
                answer.messages.append(message)
        else:
            answer.messages.append(method(case.request, metadata=metadata, timeout=30))  # type: ignore[arg-type]
    except grpc.RpcError as error:
        answer.code = error.code().name  # type: ignore[attr-defined]
        answer.message = error.details() or ""  # type: ignore[attr-defined]
        answer.metadata = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    return answer


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(CASES))
def test_both_faces_answer_alike(
    name: str,
    protocol: str,
    http: httpx.Client,
    grpc_stub: pb_grpc.ApexServiceStub,
    api_key: str,
) -> None:
    case = CASES[name]
    key = api_key if case.keyed else "wrong-key"
    expected = over_grpc(grpc_stub, case, key)
    headers = {"authorization": f"Bearer {key}", **dict(case.metadata)}
    got = call(
        http,
        protocol,
        case.method,
        case.request,
        case.reply,
        streaming=case.streaming,
        headers=headers,
    )
    assert (got.code, got.message) == (expected.code, expected.message)
    assert [comparable(m) for m in got.messages] == [comparable(m) for m in expected.messages]
    assert len(got.metadata["x-request-id"]) == 32  # the call's id, in its trailers
    if expected.metadata.get("grpc-retry-pushback-ms"):
        pushback = got.metadata.get("grpc-retry-pushback-ms") or got.headers.get(
            "grpc-retry-pushback-ms"
        )
        assert pushback == expected.metadata["grpc-retry-pushback-ms"]


def test_stored_chats_are_one_store_and_writes_replay_by_idempotency_key(
    http: httpx.Client, grpc_stub: pb_grpc.ApexServiceStub, api_key: str
) -> None:
    # A chat written over HTTP is read over gRPC, and a repeated write with the same
    # idempotency key is answered from the first one (the same ids), on either face.
    key = str(uuid.uuid4())
    headers = {"authorization": f"Bearer {api_key}", "idempotency-key": key}
    request = pb.CreateChatAndCompletionRequest(user_prompt="remember me", title="parity")
    first = call(
        http,
        "connect-json",
        "CreateChatAndCompletion",
        request,
        pb.CreateChatAndCompletionResponse,
        streaming=False,
        headers=headers,
    )
    assert first.code == "OK", first.message
    again = call(
        http,
        "connect-proto",
        "CreateChatAndCompletion",
        request,
        pb.CreateChatAndCompletionResponse,
        streaming=False,
        headers=headers,
    )
    assert again.messages == first.messages
    created = first.messages[0]
    assert isinstance(created, pb.CreateChatAndCompletionResponse)
    metadata = (("authorization", f"Bearer {api_key}"), ("idempotency-key", key))
    replayed = grpc_stub.CreateChatAndCompletion(request, metadata=metadata, timeout=30)
    assert replayed == created
    stored = grpc_stub.GetStoredChatCompletions(
        pb.GetStoredChatCompletionsRequest(chat_id=created.parsed_chat.id),
        metadata=metadata[:1],
        timeout=30,
    )
    assert [c.user_prompt_text for c in stored.chat_completions] == ["remember me"]
