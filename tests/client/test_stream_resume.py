"""Resuming a stream cut after its first chunk, against a scripted server that continues.

The scripted server honours ``x-apex-continue`` the way the real one does (only the chunks
after the prefix, under an id of its own); both clients must turn that into one
uninterrupted stream. Resuming on the real server, across replicas, is in
tests/reliability/test_resume.py.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

import apex_grpc as mc

from ._scripted_server import Failure, ScriptedServer
from .conftest import Client, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]
EXPECTED = "c0 c1 c2 c3 c4 "


async def read_all(stream: Any) -> list[mc.ChatCompletionChunkResponse]:
    if isinstance(stream, mc.AsyncChatCompletionStream):
        return [chunk async for chunk in stream]
    return list(stream)


def cut(scripted: ScriptedServer, after: int = 2, again: int | None = None) -> None:
    scripted.stream.fail_after = after
    scripted.stream.failure = Failure(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    scripted.stream.continues = True
    scripted.stream.continuation_fail_after = again


@pytest.mark.parametrize("idle_timeout", [None, 5.0])  # grpc's iterator / the careful path
async def test_a_cut_stream_resumes_as_one_uninterrupted_stream(
    either_client: Client, scripted: ScriptedServer, idle_timeout: float | None
) -> None:
    cut(scripted, after=2)
    stream = await settle(
        either_client.chat.completions.create(messages=USER, stream=True, idle_timeout=idle_timeout)
    )
    chunks = await read_all(stream)
    assert "".join(c.choices[0].delta.content for c in chunks) == EXPECTED
    assert {c.id for c in chunks} == {"s1"}  # the continuation's own id is not seen
    assert [c.choices[0].delta.role for c in chunks] == ["assistant"] + [""] * 4
    assert [c.choices[0].finish_reason for c in chunks] == [""] * 4 + ["stop"]
    final = await settle(stream.get_final_response())
    assert final.choices[0].message.content == EXPECTED and final.id == "s1"
    first, second = scripted.calls("ChatCompletionStream")
    assert "x-apex-continue" not in first.metadata
    assert second.metadata["x-apex-continue"] == "1"
    assert [(m.role, m.content) for m in second.request.messages] == [
        ("user", "hello"),
        ("assistant", "c0 c1 "),
    ]


async def test_a_stream_cut_again_resumes_again(
    either_client: Client, scripted: ScriptedServer
) -> None:
    cut(scripted, after=1, again=1)  # each continuation delivers one chunk, then breaks
    stream = await settle(either_client.chat.completions.create(messages=USER, stream=True))
    assert await settle(stream.text()) == EXPECTED
    calls = scripted.calls("ChatCompletionStream")
    prefixes = [c.request.messages[-1].content for c in calls[1:]]
    assert prefixes == ["c0 ", "c0 c1 ", "c0 c1 c2 ", "c0 c1 c2 c3 "]


async def test_a_server_that_cannot_continue_ends_in_the_typed_error(
    either_client: Client, scripted: ScriptedServer
) -> None:
    cut(scripted, after=2)
    scripted.stream.continues = False  # starts the answer over: the client must not repeat it
    stream = await settle(either_client.chat.completions.create(messages=USER, stream=True))
    got: list[str] = []
    with pytest.raises(mc.StreamInterruptedError) as caught:
        if isinstance(stream, mc.AsyncChatCompletionStream):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content)
        else:
            for chunk in stream:
                got.append(chunk.choices[0].delta.content)
    assert got == ["c0 ", "c1 "]
    assert "did not continue the answer" in str(caught.value)
    assert "cut after 2 chunks (6 characters)" in str(caught.value)


async def test_resume_off_per_client_gives_the_old_error(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient], scripted: ScriptedServer
) -> None:
    cut(scripted, after=2)
    client = client_type(
        api_key="sk-test", base_url=scripted.target, secure=False, stream_resume=False
    )
    try:
        stream = await settle(client.chat.completions.create(messages=USER, stream=True))
        with pytest.raises(mc.StreamInterruptedError, match="resuming is off"):
            await settle(stream.text())
        assert len(scripted.calls("ChatCompletionStream")) == 1
        # ... and a call can turn it back on.
        scripted.reset()
        cut(scripted, after=2)
        stream = await settle(
            client.chat.completions.create(messages=USER, stream=True, resume=True)
        )
        assert await settle(stream.text()) == EXPECTED
    finally:
        await settle(client.close())
