"""Resuming a stream cut after its first chunk, against a fake that continues answers.

`Continuing` answers the way the real server does: an ``x-apex-continue`` call gets only
the chunks after the final assistant message's text, under an id of its own, and says so in
its headers; both clients must turn that into one uninterrupted stream. Resuming on the
real server, across replicas, is in tests/reliability/test_resume.py.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, RecordedCall, Stream, error, stream

from .conftest import Client, make, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]
EXPECTED = "c0 c1 c2 c3 c4 "
PIECES = [f"c{i} " for i in range(5)]


class Continuing:
    """A callable reply: the five chunks, cut (UNAVAILABLE) after `after` of them; a
    continuation (when `continues`) sends the rest, cut again after `again` of them."""

    def __init__(self, after: int, again: int | None = None, continues: bool = True) -> None:
        self.after, self.again, self.continues = after, again, continues

    def __call__(self, call: RecordedCall) -> Stream:
        cut = error(grpc.StatusCode.UNAVAILABLE, "Socket closed")
        if not (self.continues and call.metadata.get("x-apex-continue") == "1"):
            return stream(*PIECES[: self.after], id="s1", then=cut)
        prefix = call.request.messages[-1].content
        start = next(i for i in range(len(PIECES) + 1) if "".join(PIECES[:i]) == prefix)
        rest = PIECES[start:]
        headers = [("x-apex-continue", "1")]
        if self.again is not None and self.again < len(rest):
            return stream(*rest[: self.again], id="s2", then=cut, initial_metadata=headers)
        return stream(*rest, id="s2", initial_metadata=headers)


async def read_all(answer: Any) -> list[mc.ChatCompletionChunkResponse]:
    if isinstance(answer, mc.AsyncChatCompletionStream):
        return [chunk async for chunk in answer]
    return list(answer)


@pytest.mark.parametrize("idle_timeout", [None, 5.0])  # grpc's iterator / the careful path
async def test_a_cut_stream_resumes_as_one_uninterrupted_stream(
    either_client: Client, apex_fake: FakeApex, idle_timeout: float | None
) -> None:
    apex_fake.on("ChatCompletionStream").reply(Continuing(after=2))
    answer = await settle(
        either_client.chat.completions.create(messages=USER, stream=True, idle_timeout=idle_timeout)
    )
    chunks = await read_all(answer)
    assert "".join(c.choices[0].delta.content for c in chunks) == EXPECTED
    assert {c.id for c in chunks} == {"s1"}  # the continuation's own id is not seen
    assert [c.choices[0].delta.role for c in chunks] == ["assistant"] + [""] * 4
    assert [c.choices[0].finish_reason for c in chunks] == [""] * 4 + ["stop"]
    final = await settle(answer.get_final_response())
    assert final.choices[0].message.content == EXPECTED and final.id == "s1"
    first, second = apex_fake.calls_to("ChatCompletionStream")
    assert "x-apex-continue" not in first.metadata
    assert second.metadata["x-apex-continue"] == "1"
    assert [(m.role, m.content) for m in second.request.messages] == [
        ("user", "hello"),
        ("assistant", "c0 c1 "),
    ]


async def test_a_stream_cut_again_resumes_again(either_client: Client, apex_fake: FakeApex) -> None:
    # Each continuation delivers one chunk, then breaks.
    apex_fake.on("ChatCompletionStream").reply(Continuing(after=1, again=1))
    answer = await settle(either_client.chat.completions.create(messages=USER, stream=True))
    assert await settle(answer.text()) == EXPECTED
    calls = apex_fake.calls_to("ChatCompletionStream")
    prefixes = [c.request.messages[-1].content for c in calls[1:]]
    assert prefixes == ["c0 ", "c0 c1 ", "c0 c1 c2 ", "c0 c1 c2 c3 "]


async def test_a_server_that_cannot_continue_ends_in_the_typed_error(
    either_client: Client, apex_fake: FakeApex
) -> None:
    # It starts the answer over: the client must not repeat it.
    apex_fake.on("ChatCompletionStream").reply(Continuing(after=2, continues=False))
    answer = await settle(either_client.chat.completions.create(messages=USER, stream=True))
    got: list[str] = []
    with pytest.raises(mc.StreamInterruptedError) as caught:
        if isinstance(answer, mc.AsyncChatCompletionStream):
            async for chunk in answer:
                got.append(chunk.choices[0].delta.content)
        else:
            for chunk in answer:
                got.append(chunk.choices[0].delta.content)
    assert got == ["c0 ", "c1 "]
    assert "did not continue the answer" in str(caught.value)
    assert "cut after 2 chunks (6 characters)" in str(caught.value)


async def test_resume_off_per_client_gives_the_old_error(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient], apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(Continuing(after=2))
    client = make(client_type, apex_fake, stream_resume=False)
    try:
        answer = await settle(client.chat.completions.create(messages=USER, stream=True))
        with pytest.raises(mc.StreamInterruptedError, match="resuming is off"):
            await settle(answer.text())
        assert len(apex_fake.calls_to("ChatCompletionStream")) == 1
        # ... and a call can turn it back on.
        answer = await settle(
            client.chat.completions.create(messages=USER, stream=True, resume=True)
        )
        assert await settle(answer.text()) == EXPECTED
    finally:
        await settle(client.close())
