"""``apex-grpc chats list|show|search|delete`` on a fresh server of our own."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import apex_grpc as mc

from ._helpers import CLI, Result, client_env, run


@pytest.fixture
def chats(
    start_server: Callable[..., Any], api_key: str
) -> tuple[Callable[..., Result], list[str]]:
    """A fresh server holding two chats; returns a CLI runner for it and the chat ids."""
    server = start_server()
    with mc.ApexClient(api_key=api_key, base_url=server.target, secure=False) as client:
        ids = [
            client.chats.create("painting lessons for cosmonauts").parsed_chat.id,
            client.chats.create("a recipe for borscht", title="Soup").parsed_chat.id,
        ]
    env = client_env(server.target, api_key)

    def call(*args: str) -> Result:
        return run([*CLI, "chats", *args], env)

    return call, ids


def test_list(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    result = call("list")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted(row[0] for row in rows) == sorted(ids)
    assert {row[1] for row in rows} == {"painting lessons for cosmonauts", "Soup"}
    assert all(row[2] == "apex" and row[3].endswith("Z") for row in rows)


def test_list_json(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    sessions = json.loads(call("list", "--json").stdout)["chat_sessions"]
    assert sorted(s["id"] for s in sessions) == sorted(ids)


def test_show(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    result = call("show", ids[0])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# ")
    assert lines[1] == "> painting lessons for cosmonauts"
    assert lines[2].startswith("painting lessons")  # the echo engine's answer
    stored = json.loads(call("show", ids[0], "--json").stdout)["chat_completions"]
    assert stored[0]["user_prompt_text"] == "painting lessons for cosmonauts"


def test_search(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    assert call("search", "borscht").stdout == f"{ids[1]}\n"
    assert json.loads(call("search", "cosmonauts", "--json").stdout) == {"chat_ids": [ids[0]]}
    nothing = call("search", "nowhere")
    assert nothing.returncode == 0 and nothing.stdout == ""


def test_delete(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    result = call("delete", ids[0])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "deleted 1 chat\n"
    assert call("list").stdout.split("\t")[0] == ids[1]
    gone = call("show", ids[0])
    assert gone.returncode == 1 and gone.stderr.startswith("error: NOT_FOUND: ")


def test_delete_unknown_deletes_nothing(chats: tuple[Callable[..., Result], list[str]]) -> None:
    call, ids = chats
    result = call("delete", ids[1], "no-such-chat")
    assert result.returncode == 1
    assert result.stderr.startswith("error: NOT_FOUND: ") and "no-such-chat" in result.stderr
    assert len(call("list").stdout.splitlines()) == 2
