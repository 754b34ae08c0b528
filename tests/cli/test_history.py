"""The chat history's arithmetic, without a server: headers, refusals, what to leave out."""

from __future__ import annotations

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.cli._history import ContextRefusal, History, context_refusal, header_int


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2048", 2048), (b"512", 512), (" 64 ", 64), ("0", None), ("-5", None), ("lots", None)],
)
def test_header_int(value: str | bytes, expected: int | None) -> None:
    assert header_int(
        [("other", "1"), ("x-apex-context-tokens", value)], "x-apex-context-tokens"
    ) == (expected)
    assert header_int([], "x-apex-context-tokens") is None


def refusal(details: str, *trailing: tuple[str, str]) -> mc.ApexError:
    return mc.InvalidArgumentError(
        details, code=grpc.StatusCode.INVALID_ARGUMENT, trailing_metadata=trailing
    )


def test_context_refusals_are_recognised_by_headers_or_text() -> None:
    by_text = refusal(
        "messages: the prompt is 2060 tokens, more than the local model's 2048-token context"
    )
    assert context_refusal(by_text) == ContextRefusal(2060, 2048)
    by_headers = refusal(
        "too long", ("x-apex-context-tokens", "2048"), ("x-apex-prompt-tokens", "2060")
    )
    assert context_refusal(by_headers) == ContextRefusal(2060, 2048)
    # Other invalid arguments, and other codes with the same words, are not refusals.
    assert context_refusal(refusal("sampling_parameters.temperature: must be in [0, 2]")) is None
    internal = mc.InternalServerError(by_text.details, code=grpc.StatusCode.INTERNAL)
    assert context_refusal(internal) is None


def test_turns_are_left_out_by_their_estimated_tokens() -> None:
    # A model at 4 characters a token with a 100-token window: prompts up to 75 tokens.
    history = History("s" * 20)
    history.context_tokens = 100
    for turn in range(3):
        history.commit(f"question {turn}".ljust(40), "a" * 60, 0, None)
    assert history.turns_to_skip("next") == 0  # no rate learnt yet: nothing to go by
    history.commit(
        "q".ljust(40), "a" * 60, 0, mc.CompletionUsage(prompt_tokens=90, completion_tokens=15)
    )
    # 420 characters are 105 tokens: now 0.25 a character. 20 + 4 x 100 + 40 = 460 = 115 tokens;
    # leaving out 2 turns makes 260 = 65 tokens, within 75.
    assert history.turns_to_skip("q".ljust(40)) == 2
    messages = history.messages("new", skip=2)
    assert messages[0] == mc.MessageParam(role="system", content="s" * 20)
    assert [m["content"] for m in messages[1::2]][:2] == ["question 2".ljust(40), "q".ljust(40)]
