"""``apex-grpc chat --save``: a conversation stored as a chat, each answer generated once.

The server is an ``apex-grpc serve`` subprocess of its own, whose log has
one line per call: it shows which RPCs answered, and that nothing ran twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ._helpers import CLI, Result, client_env, run
from .conftest import Served
from .test_chat import echo_answer

CALL = re.compile(r"/apex\.v1\.ApexService/(\w+) ")


def calls(server: Served) -> list[str]:
    """The RPCs the server answered, in order."""
    return CALL.findall(server.log())


def test_an_empty_list_says_how_to_store_a_chat(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served()
    result = run([*CLI, "chats", "list"], client_env(server.target, api_key))
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == 'no chats: `apex-grpc chat --save "..."` stores a conversation as one\n'


def test_a_saved_conversation_is_listed_and_each_answer_generated_once(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served()
    env = client_env(server.target, api_key)
    result = run([*CLI, "chat", "--save", "-i"], env, input="first turn\nsecond turn\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{echo_answer('first turn')}\n{echo_answer('second turn')}\n"
    (note,) = result.stderr.splitlines()
    saved = re.fullmatch(r"\(saved as chat (\S+): apex-grpc chats show \1\)", note)
    assert saved, note
    chat_id = saved[1]
    # One call per turn, which answered and stored it; no chat completion besides.
    assert calls(server) == ["CreateChatAndCompletion", "CreateCompletion"]
    listed = run([*CLI, "chats", "list"], env)
    assert listed.stdout.split("\t")[:2] == [chat_id, "first turn"]
    shown = run([*CLI, "chats", "show", chat_id], env).stdout
    assert "> first turn\n" in shown and "> second turn\n" in shown
    assert echo_answer("second turn") in shown


def test_reset_starts_a_new_saved_chat(served: Callable[..., Served], api_key: str) -> None:
    server = served()
    env = client_env(server.target, api_key)
    result = run([*CLI, "chat", "--save", "-i"], env, input="one\n/reset\ntwo\n")
    assert result.returncode == 0, result.stderr
    notes = result.stderr.splitlines()
    assert notes[1] == "(history cleared: the next prompt starts a new saved chat)"
    assert calls(server) == ["CreateChatAndCompletion", "CreateChatAndCompletion"]
    assert len(run([*CLI, "chats", "list"], env).stdout.splitlines()) == 2


def test_json_prints_the_stored_chat(cli: Callable[..., Result]) -> None:
    result = cli("chat", "--save", "--json", "a stored question")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["parsed_completion"]["user_prompt_text"] == "a stored question"
    assert response["parsed_completion"]["completion_text"] == echo_answer("a stored question")


def test_flags_a_stored_chat_cannot_carry_are_refused(cli: Callable[..., Result]) -> None:
    result = cli("chat", "--save", "-s", "Be brief.", "-t", "0.2", "hi")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: apex-grpc chat")
    assert "--save cannot be used with --system, --temperature" in result.stderr
