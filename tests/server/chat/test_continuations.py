"""Continuing an answer (``x-apex-continue``): what a client resuming a cut stream asks.

The echo answer is a function of the prompt, so the oracle is exact: for every prefix of
the uninterrupted answer, the continuation is the rest of it, byte for byte, with the
same chunk boundaries after the cut and the same usage (the whole answer's).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

Metadata = tuple[tuple[str, str | bytes], ...]
CONTINUE: Metadata = (("x-apex-continue", "1"),)

pytestmark = pytest.mark.oldest


def answer(
    stub: pb_grpc.ApexServiceStub, request: pb.ChatCompletionRequest, metadata: Metadata
) -> tuple[list[pb.ChatCompletionChunkResponse], Metadata]:
    call = stub.ChatCompletionStream(request, metadata=metadata, timeout=10)
    chunks = list(call)
    return chunks, tuple(call.initial_metadata())


def continued(request: pb.ChatCompletionRequest, prefix: str) -> pb.ChatCompletionRequest:
    request = pb.ChatCompletionRequest.FromString(request.SerializeToString())
    request.messages.add(role="assistant", content=prefix)
    return request


@pytest.mark.parametrize(
    "shape",
    [
        (("x-echo-chunks", "5"), ("x-echo-chunk-size", "4")),
        (("x-echo-chunk-sizes", "1,7,3,9"),),
        (("x-echo-chunks", "3"), ("x-echo-chunk-size", "40")),  # chunks longer than the prompt
    ],
)
def test_every_prefix_continues_into_the_rest_of_the_uninterrupted_answer(
    stub: pb_grpc.ApexServiceStub,
    auth: Metadata,
    chat: Callable[..., pb.ChatCompletionRequest],
    shape: Metadata,
) -> None:
    request = chat(("system", "be brief"), "a prompt, é ✓")
    whole, _ = answer(stub, request, (*auth, *shape))
    text = "".join(c.choices[0].delta.content for c in whole)
    assert len(whole) > 1 and text
    sizes = [len(c.choices[0].delta.content) for c in whole]
    boundaries = {sum(sizes[:i]) for i in range(len(whole))}
    for cut in range(1, len(text) + 1):
        chunks, initial = answer(stub, continued(request, text[:cut]), (*auth, *shape, *CONTINUE))
        assert ("x-apex-continue", "1") in initial
        assert "".join(c.choices[0].delta.content for c in chunks) == text[cut:], cut
        assert all(not c.choices[0].delta.role for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[-1].usage == whole[-1].usage  # the whole answer, the prompt without prefix
        if cut in boundaries:  # cut between chunks: the same chunks as the rest of the answer
            rest = [c.choices[0].delta.content for c in whole if c.choices[0].delta.content]
            assert [c.choices[0].delta.content for c in chunks] == rest[-len(chunks) :]


def test_a_prefix_that_is_not_this_answer_cannot_be_continued(
    stub: pb_grpc.ApexServiceStub, auth: Metadata, chat: Callable[..., pb.ChatCompletionRequest]
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        answer(stub, continued(chat("hello"), "goodbye"), (*auth, *CONTINUE))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "not the start of the echo answer" in caught.value.details()


@pytest.mark.parametrize(
    ("request_turns", "metadata", "details"),
    [
        ((("user", "hi"),), CONTINUE, "must be the assistant's"),
        ((("assistant", "hi"),), CONTINUE, "must be the assistant's"),
        ((("user", "hi"), ("assistant", "hi")), (("x-apex-continue", "yes"),), "must be 1"),
        ((("user", "hi"), ("assistant", "")), CONTINUE, "messages[1].content: must not be empty"),
    ],
)
def test_a_continuation_is_validated_as_any_message(
    stub: pb_grpc.ApexServiceStub,
    auth: Metadata,
    chat: Callable[..., pb.ChatCompletionRequest],
    request_turns: tuple[tuple[str, str], ...],
    metadata: Metadata,
    details: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        answer(stub, chat(*request_turns), (*auth, *metadata))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details in caught.value.details()


def test_without_the_marker_a_final_assistant_message_starts_a_new_turn(
    stub: pb_grpc.ApexServiceStub, auth: Metadata, chat: Callable[..., pb.ChatCompletionRequest]
) -> None:
    fresh, initial = answer(stub, chat("hello"), auth)
    after, _ = answer(stub, continued(chat("hello"), "hel"), auth)
    assert [c.choices[0].delta.content for c in after] == [
        c.choices[0].delta.content for c in fresh
    ]
    assert after[0].choices[0].delta.role == "assistant"
    assert all(key != "x-apex-continue" for key, _ in initial)


def test_a_unary_continuation_answers_the_rest(
    stub: pb_grpc.ApexServiceStub, auth: Metadata, chat: Callable[..., pb.ChatCompletionRequest]
) -> None:
    whole = stub.ChatCompletion(chat("hello"), metadata=auth, timeout=10)
    text = whole.choices[0].message.content
    rest = stub.ChatCompletion(
        continued(chat("hello"), text[:5]), metadata=(*auth, *CONTINUE), timeout=10
    )
    assert rest.choices[0].message.content == text[5:]
    assert rest.usage == whole.usage
