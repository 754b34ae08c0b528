"""The context window: reported on every chat call, a machine-recognisable overflow, and
stored chats whose history is trimmed to fit (the echo engine's ``echo_context`` stands in
for the local model's window; test_llama.py checks the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server import ChatRequest, EchoEngine, Message
from apex_grpc_server._engines.base import (
    CONTEXT_OVERFLOW,
    CONTEXT_TOKENS_KEY,
    PROMPT_TOKENS_KEY,
    fit_messages,
)

pytestmark = pytest.mark.oldest


def lengths(messages: Any) -> int:
    return sum(len(message.content) for message in messages)


def turns(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role, content) for role, content in pairs)


def test_fit_drops_the_oldest_turns_but_never_system_or_last() -> None:
    history = turns(
        ("system", "S" * 10),
        ("user", "u1" * 10),
        ("assistant", "a1" * 10),
        ("user", "u2" * 10),
        ("assistant", "a2" * 10),
        ("user", "now"),
    )
    assert fit_messages(history, lengths, 1000) == history
    # The oldest turn (user + its answer) goes first, whole.
    assert fit_messages(history, lengths, 60) == (history[0], *history[3:])
    # Then the next; the system message and the new prompt always stay.
    assert fit_messages(history, lengths, 20) == (history[0], history[5])
    assert fit_messages(history, lengths, 1) == (history[0], history[5])
    assert fit_messages(turns(("user", "x" * 50)), lengths, 10) == turns(("user", "x" * 50))


def test_echo_engine_trims_history_only_when_asked() -> None:
    engine = EchoEngine(chunks=2, chunk_size=8, context=100)  # 16 characters kept for the answer
    history = turns(*[("user", "q" * 30), ("assistant", "a" * 30)] * 3, ("user", "last"))

    def prompt_tokens(fit: bool) -> int:
        async def run() -> int:
            request = ChatRequest(history, fit_context=fit)
            deltas = [delta async for delta in engine.stream(request)]
            usage = deltas[-1].finish.usage if deltas[-1].finish else None
            assert usage is not None
            return usage.prompt_tokens

        return asyncio.run(run())

    assert prompt_tokens(fit=True) == 64  # one turn (60) and the prompt (4): fits 100 - 16
    with pytest.raises(Exception) as overflow:
        prompt_tokens(fit=False)
    assert str(overflow.value).startswith(CONTEXT_OVERFLOW)


def ask(text: str) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)])


def test_every_chat_call_reports_the_context_window(
    start_server: Callable[..., Any], connect: Callable[[str], Any], auth: Any
) -> None:
    stub = connect(start_server(echo_context=100).target)
    _, unary = stub.ChatCompletion.with_call(ask("hi"), metadata=auth)
    assert (CONTEXT_TOKENS_KEY, "100") in unary.trailing_metadata()
    stream = stub.ChatCompletionStream(ask("hi"), metadata=auth)
    assert list(stream)
    assert (CONTEXT_TOKENS_KEY, "100") in stream.trailing_metadata()


def test_no_context_header_when_the_engine_has_no_window(stub, auth) -> None:
    _, unary = stub.ChatCompletion.with_call(ask("hi"), metadata=auth)
    assert CONTEXT_TOKENS_KEY not in dict(unary.trailing_metadata())


def test_overflow_is_recognisable_by_details_and_metadata(
    start_server: Callable[..., Any], connect: Callable[[str], Any], auth: Any
) -> None:
    stub = connect(start_server(echo_context=100).target)
    for call in (stub.ChatCompletion, lambda *a, **k: list(stub.ChatCompletionStream(*a, **k))):
        with pytest.raises(grpc.RpcError) as caught:
            call(ask("x" * 150), metadata=auth)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == (
            f"{CONTEXT_OVERFLOW}the prompt is 150 tokens, more than the echo model's"
            " 100-token context (drop earlier turns)"
        )
        trailing = [(k, v) for k, v in error.trailing_metadata() if k.startswith("x-apex-")]
        assert sorted(trailing) == [(CONTEXT_TOKENS_KEY, "100"), (PROMPT_TOKENS_KEY, "150")]


def test_a_stored_chat_keeps_going_past_the_context(
    start_server: Callable[..., Any], connect: Callable[[str], Any], auth: Any
) -> None:
    # Each turn is a 60-character prompt and a 32-character answer; the window holds two.
    stub = connect(start_server(echo_context=200, echo_chunks=2, echo_chunk_size=16).target)
    prompt = "p" * 60
    chat_id = stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt=prompt), metadata=auth
    ).parsed_chat.id
    for _ in range(5):
        added = stub.CreateCompletion(
            pb.CreateCompletionRequest(chat_id=chat_id, user_prompt=prompt), metadata=auth
        )
        assert added.parsed_completion.completion_text == "p" * 32
    # A prompt that cannot fit on its own is still refused, recognisably.
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateCompletion(
            pb.CreateCompletionRequest(chat_id=chat_id, user_prompt="x" * 300), metadata=auth
        )
    assert caught.value.details().startswith(CONTEXT_OVERFLOW)


def test_the_package_documents_the_contract() -> None:
    import apex_grpc_server

    doc = " ".join((apex_grpc_server.__doc__ or "").split())
    for text in (CONTEXT_OVERFLOW.strip(), CONTEXT_TOKENS_KEY, PROMPT_TOKENS_KEY):
        assert f"``{text}" in doc
