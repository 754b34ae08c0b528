"""The x-echo-* test knobs: injected failures, pushback, sleeps, and where they are off."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

pytestmark = pytest.mark.oldest


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("x-echo-fail-message", "plain ASCII, 100% literal: %41 {json} \\n"),
        ("x-echo-fail-message-bin", "tab\there\r\nnew line, non-ASCII: é ✓ 🚀"),
    ],
)
def test_unary_fails_at_once_with_the_exact_message(stub, auth, chat, header, message) -> None:
    value = message.encode() if header.endswith("-bin") else message
    metadata = (*auth, ("x-echo-fail-code", "UNAVAILABLE"), (header, value))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == message
    assert "x-request-id" in dict(caught.value.trailing_metadata())


def test_status_by_number_on_any_rpc(stub, auth) -> None:
    metadata = (*auth, ("x-echo-fail-code", "8"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.WebRetrieval(pb.WebRetrievalRequest(search_query="python"), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_fails_after_n_chunks(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-fail-code", "INTERNAL"), ("x-echo-fail-after", "3"))
    received = []
    stream = stub.ChatCompletionStream(chat("hi"), metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(stream)
    assert len(received) == 3
    assert caught.value.code() == grpc.StatusCode.INTERNAL


def test_stream_fails_before_the_first_chunk(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-fail-code", "UNAVAILABLE"))
    call = stub.ChatCompletionStream(chat("hi"), metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(call))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_fail_after_more_chunks_than_sent_fails_at_the_end(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-fail-code", "ABORTED"), ("x-echo-fail-after", "50"))
    received = []
    stream = stub.ChatCompletionStream(chat("hi"), metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(stream)
    assert len(received) == 8
    assert caught.value.code() == grpc.StatusCode.ABORTED


def test_fail_times_counts_per_key(stub, auth, chat) -> None:
    key = uuid.uuid4().hex
    metadata = (
        *auth,
        ("x-echo-fail-code", "UNAVAILABLE"),
        ("x-echo-fail-times", "2"),
        ("x-echo-fail-key", key),
    )
    codes = []
    for _ in range(4):
        try:
            stub.ChatCompletion(chat("hi"), metadata=metadata)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 2 + [grpc.StatusCode.OK] * 2
    # Another key has its own count.
    other = (*metadata[:-1], ("x-echo-fail-key", uuid.uuid4().hex))
    with pytest.raises(grpc.RpcError):
        stub.ChatCompletion(chat("hi"), metadata=other)


def test_pushback_is_sent_as_trailing_metadata(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-fail-code", "UNAVAILABLE"), ("x-echo-pushback-ms", "250"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=metadata)
    assert ("grpc-retry-pushback-ms", "250") in caught.value.trailing_metadata()


def test_sleep_before_answering(stub, auth, chat) -> None:
    started = time.monotonic()
    stub.ChatCompletion(chat("hi"), metadata=(*auth, ("x-echo-sleep-ms", "150")))
    assert time.monotonic() - started >= 0.15
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetChatSessions(
            pb.GetChatSessionsRequest(), metadata=(*auth, ("x-echo-sleep-ms", "2000")), timeout=0.1
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("x-echo-chunks", "many", "x-echo-chunks: must be an integer, got 'many'"),
        ("x-echo-chunk-size", "0", "x-echo-chunk-size: must be in [1, 4194304], got 0"),
        ("x-echo-sleep-ms", "-1", "x-echo-sleep-ms: must be in [0, 600000], got -1"),
        ("x-echo-fail-code", "NOPE", "x-echo-fail-code: unknown or non-error status 'NOPE'"),
        ("x-echo-fail-code", "OK", "x-echo-fail-code: unknown or non-error status 'OK'"),
    ],
)
def test_bad_knob_values_are_invalid_argument(stub, auth, chat, header, value, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=(*auth, (header, value)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


def test_knobs_need_authentication(stub, chat) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=(("x-echo-fail-code", "INTERNAL"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_knobs_can_be_turned_off(start_server, connect, auth, chat) -> None:
    stub = connect(start_server(test_knobs=False).target)
    response = stub.ChatCompletion(
        chat("hi"), metadata=(*auth, ("x-echo-fail-code", "INTERNAL"), ("x-echo-chunks", "1"))
    )
    assert response.choices[0].message.content == "hi" * 64  # x-echo-chunks ignored
    # The interop echo stays on.
    _, call = stub.ChatCompletion.with_call(
        chat("hi"), metadata=(*auth, ("x-grpc-test-echo-initial", "v"))
    )
    assert ("x-grpc-test-echo-initial", "v") in call.initial_metadata()
