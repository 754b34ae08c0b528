"""A conversation that outgrows the model's context window goes on: the oldest turns are left out.

The server is `ContextWindow` (a 300-token window; tokens are characters;
every answer is 100 characters), so the arithmetic in these tests is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ._context_window import ContextWindow
from ._helpers import CLI, Result, client_env, run
from .conftest import Served

SYSTEM = "sys"
TRIM_NOTE = (
    "(the conversation no longer fits the model's 300-token context: the oldest turns are left"
    " out from now on; /reset clears the history)"
)


@pytest.fixture
def server() -> Iterator[ContextWindow]:
    with ContextWindow(context=300, answer_chars=100) as running:
        yield running


def chat(server: ContextWindow, api_key: str, lines: list[str], *flags: str) -> Result:
    """An interactive chat fed `lines` on stdin, with the system message SYSTEM."""
    command = [*CLI, "chat", "-i", "-s", SYSTEM, *flags]
    return run(command, client_env(server.target, api_key), input="".join(f"{x}\n" for x in lines))


def sent(server: ContextWindow) -> list[tuple[int, bool]]:
    """Each request's prompt tokens and whether it was refused."""
    return [(seen.prompt_tokens, seen.refused) for seen in server.seen]


@pytest.mark.parametrize("headers", [False, True], ids=["refusal-text", "refusal-headers"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_a_refused_turn_is_sent_again_without_the_oldest_turn(
    server: ContextWindow, api_key: str, headers: bool, stream: bool
) -> None:
    # Without headers the refusal is recognised by its text; with them, by the
    # x-apex-* trailers alone (the text is then one the CLI cannot parse).
    server.refusal_headers = headers
    flags = () if stream else ("--no-stream",)
    result = chat(server, api_key, ["one", "two", "six", "ten"], *flags)
    assert result.returncode == 0, result.stderr
    assert result.stderr == TRIM_NOTE + "\n"  # told once
    assert result.stdout.count("\n") == 4  # four answers
    # 3 (system) + 3, then + 100 + 3 a turn: the fourth, 315, is over 300.
    assert sent(server) == [(6, False), (109, False), (212, False), (315, True), (212, False)]
    last = server.seen[-1].messages
    assert last[0] == ("system", SYSTEM)  # the system message stays
    assert [content for role, content in last if role == "user"] == ["two", "six", "ten"]


def test_a_window_announced_with_each_answer_is_never_overrun(
    server: ContextWindow, api_key: str
) -> None:
    # x-apex-context-tokens on every answer: from the first one, the CLI keeps a quarter of
    # the window free for the answer (prompts of at most 225), and nothing is refused.
    server.answer_headers = True
    result = chat(server, api_key, ["one", "two", "six", "ten", "abc"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == TRIM_NOTE + "\n"
    assert sent(server) == [(6, False), (109, False), (212, False), (212, False), (212, False)]


def test_once_the_window_is_known_turns_are_left_out_before_sending(
    server: ContextWindow, api_key: str
) -> None:
    # The first refusal tells the window (300); from then on the CLI keeps a quarter of it
    # free for the answer: a prompt is at most 225 tokens, and the server refuses no more.
    result = chat(server, api_key, ["one", "two", "six", "ten", "abc", "xyz"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == TRIM_NOTE + "\n"
    refused_once = [(6, False), (109, False), (212, False), (315, True), (212, False)]
    # Then 315 again, over 225: the oldest turn is left out before sending, each time.
    assert sent(server) == [*refused_once, (212, False), (212, False)]


def test_a_message_too_long_on_its_own_fails_and_keeps_the_history(
    server: ContextWindow, api_key: str
) -> None:
    long = "L" * 400
    result = chat(server, api_key, ["one", long, "two"])
    assert result.returncode == 2  # the server's INVALID_ARGUMENT, as invalid arguments exit
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: INVALID_ARGUMENT: messages: the prompt is 403 tokens, more than the local"
        " model's 300-token context"
    ]
    # Sent with the first turn, then without it; the next turn has the first one back.
    assert sent(server) == [(6, False), (506, True), (403, True), (109, False)]


def test_reset_forgets_the_turns_and_keeps_the_system_message(
    server: ContextWindow, api_key: str
) -> None:
    result = chat(server, api_key, ["one", "/reset", "two"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == "(history cleared; the system prompt stays)\n"
    assert server.seen[-1].messages == [("system", SYSTEM), ("user", "two")]


@pytest.mark.parametrize("no_stream", [False, True])
def test_an_answer_cut_by_the_token_limit_says_so(
    server: ContextWindow, api_key: str, no_stream: bool
) -> None:
    flags = ["--no-stream"] if no_stream else []
    command = [*CLI, "chat", *flags, "--max-new-tokens", "7", "hello"]
    result = run(command, client_env(server.target, api_key))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hellohe\n"
    assert result.stderr == "[cut at the token limit: 7 tokens; raise --max-new-tokens]\n"
    # An answer that ends by itself says nothing.
    whole = run([*CLI, "chat", *flags, "hello"], client_env(server.target, api_key))
    assert (whole.returncode, whole.stderr) == (0, "")


def test_the_client_asks_for_4096_tokens_unless_told(api_key: str) -> None:
    # What `chat --help` says: without --max-new-tokens the request asks for 4096.
    with ContextWindow(context=10_000, answer_chars=5000) as server:
        result = run([*CLI, "chat", "hello"], client_env(server.target, api_key))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 4096 + 1
    assert result.stderr == "[cut at the token limit: 4096 tokens; raise --max-new-tokens]\n"


@pytest.mark.parametrize(("flags", "asked"), [((), 4096), (("--max-new-tokens", "20"), 20)])
def test_an_answer_cut_by_the_servers_own_cap_says_whose_limit_it_was(
    api_key: str, flags: tuple[str, ...], asked: int
) -> None:
    # Raising --max-new-tokens would not help: the server caps answers at 10 tokens.
    with ContextWindow(answer_chars=100, cap=10) as server:
        result = run([*CLI, "chat", *flags, "hello"], client_env(server.target, api_key))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hellohello\n"
    assert result.stderr == (
        f"[cut at the server's token limit: 10 tokens, though --max-new-tokens was {asked}]\n"
    )


@pytest.mark.llm
def test_the_local_model_keeps_talking_past_its_context(
    served: Callable[..., Served], api_key: str
) -> None:
    # The real local engine with a 256-token window: a few turns overflow it.
    server = served("--engine=local", "--n-ctx=256", "--max-new-tokens=64")
    env = client_env(server.target, api_key)
    turns = "".join(f"Tell me one fact about the number {n}.\n" for n in range(6))
    result = run([*CLI, "chat", "-i", "--seed", "7"], env, input=turns, timeout=300)
    assert result.returncode == 0, result.stderr
    trimmed = TRIM_NOTE.replace("300", "256")
    notes = result.stderr.splitlines()
    assert notes.count(trimmed) == 1, notes
    # Answers the server cut (its 64-token cap, or the window's end) say so; nothing failed.
    others = [line for line in notes if line != trimmed]
    assert all(line.startswith("[cut at the server's token limit: ") for line in others), notes
    cut = run([*CLI, "chat", "--max-new-tokens", "5", "Tell me a story."], env, timeout=120)
    assert cut.returncode == 0, cut.stderr
    assert cut.stderr == "[cut at the token limit: 5 tokens; raise --max-new-tokens]\n"
