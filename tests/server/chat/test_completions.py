"""ChatCompletion and ChatCompletionStream on the echo engine: exact content and wire shape."""

from __future__ import annotations

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

pytestmark = pytest.mark.oldest


def echo_text(prompt: str, chunks: int = 8, chunk_size: int = 16) -> str:
    total = chunks * chunk_size
    return (prompt * (total // len(prompt) + 1))[:total]


def test_unary_answer_is_the_prompt_repeated_and_cut(stub, auth, chat) -> None:
    response = stub.ChatCompletion(chat("Write a short story."), metadata=auth)
    (choice,) = response.choices
    assert choice.message.content == echo_text("Write a short story.")
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.index == 0
    assert response.object == "chat.completion"
    assert response.model == "echo"
    assert response.id
    assert response.created > 0
    # Echo usage counts characters.
    assert response.usage.prompt_tokens == len("Write a short story.")
    assert response.usage.completion_tokens == 128
    assert response.usage.total_tokens == response.usage.prompt_tokens + 128


def test_prompt_is_the_last_user_message(stub, auth, chat) -> None:
    request = chat(
        ("system", "be brief"), ("user", "first"), ("assistant", "ok"), ("user", "last!")
    )
    response = stub.ChatCompletion(request, metadata=auth)
    assert response.choices[0].message.content == echo_text("last!")
    assert response.usage.prompt_tokens == len("be brieffirstoklast!")


def test_prompt_without_user_message_is_the_last_message(stub, auth, chat) -> None:
    response = stub.ChatCompletion(chat(("system", "sys"), ("assistant", "abc")), metadata=auth)
    assert response.choices[0].message.content == echo_text("abc")


def test_stream_sends_one_chunk_per_delta(stub, auth, chat) -> None:
    chunks = list(stub.ChatCompletionStream(chat("0123456789"), metadata=auth))
    assert len(chunks) == 8
    assert [c.choices[0].delta.content for c in chunks] == [
        echo_text("0123456789")[i * 16 : (i + 1) * 16] for i in range(8)
    ]
    assert [c.choices[0].delta.role for c in chunks] == ["assistant"] + [""] * 7
    assert {(c.id, c.created, c.model) for c in chunks} == {
        (chunks[0].id, chunks[0].created, "echo")
    }
    assert all(c.choices[0].index == 0 for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks] == [""] * 7 + ["stop"]
    assert [c.HasField("usage") for c in chunks] == [False] * 7 + [True]
    assert chunks[-1].usage.completion_tokens == 128
    assert chunks[-1].usage.prompt_tokens == 10


def test_per_request_chunk_overrides(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-chunks", "3"), ("x-echo-chunk-size", "5"))
    chunks = list(stub.ChatCompletionStream(chat("abc"), metadata=metadata))
    assert [c.choices[0].delta.content for c in chunks] == ["abcab", "cabca", "bcabc"]
    unary = stub.ChatCompletion(chat("abc"), metadata=metadata)
    assert unary.choices[0].message.content == "abcabcabcabcabc"


def test_zero_chunks_is_an_empty_stream(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-chunks", "0"))
    assert list(stub.ChatCompletionStream(chat("anything"), metadata=metadata)) == []
    unary = stub.ChatCompletion(chat("anything"), metadata=metadata)
    assert unary.choices[0].message.content == ""
    assert unary.choices[0].finish_reason == "stop"
    assert unary.usage.completion_tokens == 0


def test_sdk_defaults_are_accepted(stub, auth, chat) -> None:
    """What the official SDK sends: top_k unset, max_new_tokens 4096, a random seed."""
    params = pb.SamplingParameters(temperature=0.7, top_p=0.95, max_new_tokens=4096, do_sample=True)
    request = chat("hi", sampling_parameters=params, seed=12345, stream=True)
    assert stub.ChatCompletion(request, metadata=auth).choices[0].message.content


def test_unicode_prompt_is_cut_by_characters(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-chunks", "2"), ("x-echo-chunk-size", "3"))
    chunks = list(stub.ChatCompletionStream(chat("ü✓🚀"), metadata=metadata))
    assert [c.choices[0].delta.content for c in chunks] == ["ü✓🚀", "ü✓🚀"]


def test_delay_between_chunks(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-chunks", "3"), ("x-echo-delay-ms", "50"))
    call = stub.ChatCompletionStream(chat("x"), metadata=metadata, timeout=0.06)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_server_side_timeout_field(stub, auth, chat) -> None:
    metadata = (*auth, ("x-echo-chunks", "100"), ("x-echo-delay-ms", "20"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("x", timeout=1), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == "timeout: the completion took longer than 1 s"


def test_request_id_in_initial_and_trailing_metadata(stub, auth, chat) -> None:
    # Unary: in trailing metadata (headers would arrive with the response anyway).
    _, call = stub.ChatCompletion.with_call(chat("hi"), metadata=auth)
    trailing = dict(call.trailing_metadata())
    assert len(trailing["x-request-id"]) == 32
    assert "x-request-id" not in dict(call.initial_metadata())
    # Streams: up front too, so it can be read before the first chunk.
    stream = stub.ChatCompletionStream(chat("hi"), metadata=auth)
    list(stream)
    assert (
        dict(stream.initial_metadata())["x-request-id"]
        == dict(stream.trailing_metadata())["x-request-id"]
    )


def test_interop_metadata_echo(stub, auth, chat) -> None:
    metadata = (
        *auth,
        ("x-grpc-test-echo-initial", "test_initial_metadata_value"),
        ("x-grpc-test-echo-trailing-bin", b"\x0a\x0b\x0a\x0b\x0a\x0b"),
    )
    _, unary = stub.ChatCompletion.with_call(chat("hi"), metadata=metadata)
    stream = stub.ChatCompletionStream(chat("hi"), metadata=metadata)
    list(stream)
    for call in (unary, stream):
        assert (
            "x-grpc-test-echo-initial",
            "test_initial_metadata_value",
        ) in call.initial_metadata()
        assert ("x-grpc-test-echo-trailing-bin", b"\x0a\x0b\x0a\x0b\x0a\x0b") in (
            call.trailing_metadata()
        )
