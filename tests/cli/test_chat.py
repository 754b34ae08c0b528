"""``apex-grpc chat`` against a real local server: streaming, JSON, stdin, interactive mode."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from apex_grpc.cli._chat import request_options
from apex_grpc.cli._parser import build_parser

from ._helpers import Result


def echo_answer(prompt: str, chunks: int = 8, size: int = 16) -> str:
    """What the echo engine answers: the prompt repeated, cut into `chunks` pieces."""
    window = prompt * (size // len(prompt) + 2)
    return "".join(
        window[(i * size) % len(prompt) : (i * size) % len(prompt) + size] for i in range(chunks)
    )


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_streams_the_answer_to_stdout(cli: Callable[..., Result]) -> None:
    result = cli("chat", "Hello there")
    assert result.returncode == 0, result.stderr
    assert result.stdout == echo_answer("Hello there") + "\n"
    assert result.stderr == ""


def test_prompt_words_are_joined(cli: Callable[..., Result]) -> None:
    result = cli("chat", "tell", "me", "more")
    assert result.stdout == echo_answer("tell me more") + "\n"


def test_json_is_one_object_per_chunk(cli: Callable[..., Result]) -> None:
    chunks = json_lines(cli("chat", "--json", "stream me"))
    assert len(chunks) == 8
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == echo_answer("stream me")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert int(chunks[-1]["usage"]["completion_tokens"]) == len(text)


def test_json_numbers_are_numbers(cli: Callable[..., Result]) -> None:
    # protobuf's JSON mapping writes int64 fields as strings; the CLI writes numbers.
    chunks = json_lines(cli("chat", "--json", "numbers"))
    assert chunks[-1]["usage"] == {
        "completion_tokens": 128,
        "prompt_tokens": 7,
        "total_tokens": 135,
    }
    assert all(type(chunk["created"]) is int for chunk in chunks)
    (response,) = json_lines(cli("chat", "--json", "--no-stream", "numbers"))
    assert response["usage"]["total_tokens"] == 135


def test_no_stream_prints_the_whole_answer(cli: Callable[..., Result]) -> None:
    result = cli("chat", "--no-stream", "all at once")
    assert result.returncode == 0, result.stderr
    assert result.stdout == echo_answer("all at once") + "\n"


def test_no_stream_json_is_one_response(cli: Callable[..., Result]) -> None:
    (response,) = json_lines(cli("chat", "--no-stream", "--json", "one object"))
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"] == echo_answer("one object")
    assert response["choices"][0]["finish_reason"] == "stop"


def test_system_message_is_sent(cli: Callable[..., Result]) -> None:
    # The echo engine counts the characters of every message as prompt tokens.
    chunks = json_lines(cli("chat", "--json", "--system", "Be brief.", "hi"))
    assert int(chunks[-1]["usage"]["prompt_tokens"]) == len("Be brief.") + len("hi")


def test_reads_the_prompt_from_piped_stdin(cli: Callable[..., Result]) -> None:
    result = cli("chat", input="a piped prompt\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == echo_answer("a piped prompt") + "\n"
    assert cli("chat", "-", input="dash prompt").stdout == echo_answer("dash prompt") + "\n"


def test_empty_stdin_is_a_usage_error(cli: Callable[..., Result]) -> None:
    result = cli("chat", input="  \n")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: apex-grpc chat")
    assert "no prompt" in result.stderr


def test_global_flags_work_before_and_after_the_command(cli: Callable[..., Result]) -> None:
    # x-echo-* metadata are the echo server's knobs: 2 chunks of 3 characters.
    result = cli("--metadata", "x-echo-chunks=2", "chat", "hi", "--metadata", "x-echo-chunk-size=3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hihihi\n"


def test_help_lists_the_slash_commands_and_the_token_default(cli: Callable[..., Result]) -> None:
    result = cli("chat", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for line in ("/help list these commands", "/reset forget the conversation", "/exit leave"):
        assert line in text
    assert "oldest turns are left out" in text
    assert (
        "longest answer, in tokens (default 4096, as the official SDK 2.1.0; a local apex-grpc"
        " serve cuts answers at its own --max-new-tokens)"
    ) in text


def test_sampling_flags_map_to_the_request() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(
        shlex.split("chat -t 0.2 --top-p 0.5 --top-k 5 --max-tokens 16 --seed 7 --greedy -m m1 hi")
    )
    assert request_options(args) == {
        "sampling_parameters": {
            "temperature": 0.2,
            "top_p": 0.5,
            "top_k": 5.0,
            "max_new_tokens": 16,
            "do_sample": False,
        },
        "seed": 7,
        "model": "m1",
    }
    assert request_options(parser.parse_args(["chat", "hi"])) == {}


def test_sampling_flags_are_accepted_by_the_server(cli: Callable[..., Result]) -> None:
    result = cli(
        "chat", "-t", "0.2", "--top-p", "0.5", "--top-k", "5", "--max-new-tokens", "16",
        "--seed", "7", "--greedy", "--model", "m1", "hi",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == echo_answer("hi") + "\n"


def test_interactive_mode_keeps_the_history(cli: Callable[..., Result]) -> None:
    chunks = json_lines(cli("chat", "-i", "--json", input="first\nsecond\n"))
    finals = [c for c in chunks if c["choices"][0].get("finish_reason")]
    assert len(finals) == 2
    first_answer = echo_answer("first")
    # Turn two sends: first, the first answer, second.
    assert int(finals[0]["usage"]["prompt_tokens"]) == len("first")
    assert int(finals[1]["usage"]["prompt_tokens"]) == len("first" + first_answer + "second")


def test_interactive_mode_in_plain_text(cli: Callable[..., Result]) -> None:
    result = cli("chat", "-i", "-s", "sys", input="one\n\ntwo\n/exit\nthree\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{echo_answer('one')}\n{echo_answer('two')}\n"


def test_interactive_mode_starts_with_the_given_prompt(cli: Callable[..., Result]) -> None:
    result = cli("chat", "-i", "opening", input="next\n")
    assert result.stdout == f"{echo_answer('opening')}\n{echo_answer('next')}\n"


@pytest.mark.parametrize("flag", ["--no-stream", "--json"])
def test_interactive_mode_reports_a_failed_turn_and_goes_on(
    cli: Callable[..., Result], flag: str
) -> None:
    result = cli(
        "--metadata", "x-echo-fail-code=INTERNAL", "--metadata", "x-echo-fail-times=1",
        "--metadata", f"x-echo-fail-key=cli-interactive{flag}", "chat", "-i", flag,
        input="fails\nworks\n",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: INTERNAL: failure injected")
    assert "works" in result.stdout and "fails" not in result.stdout
