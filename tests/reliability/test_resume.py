"""Streams that survive: answers cut by a killed replica, a short drain or a reset connection
resume on a replica that is up, and every stream ends with the uninterrupted answer.

The echo engine's answer is a function of its prompt, so the oracle is exact: each
stream's text must equal the answer a fresh call gets, byte for byte. Each stream has a
prompt of its own, so a continuation sent with the wrong prefix, or to a server that
started over, shows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import apex_grpc as mc

from ._process import KEY, ServerProcess
from ._sides import SIDES, AsyncSide, make_side
from .conftest import Fleet, target_of

CHUNKS, DELAY_S = "40", "0.05"  # answers of about 2 s
ANSWER = ("--echo-chunks", CHUNKS, "--echo-delay", DELAY_S, "--echo-chunk-size", "12")
LONG_ANSWER = ("--echo-chunks", "80", "--echo-delay", DELAY_S, "--echo-chunk-size", "12")


def prompt(number: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"stream {number}: tell me more, "}]


async def expected(side: Any, streams: int) -> list[str]:
    """The uninterrupted answers, asked without delay before anything fails."""
    fast = {"x-echo-delay-ms": "0"}
    return [
        (await side.chat(messages=prompt(n), metadata=fast)).choices[0].message.content
        for n in range(streams)
    ]


async def run_streams(
    side: Any, streams: int, cut_at: float, cut: Any, **options: Any
) -> list[str | BaseException]:
    """`streams` streams at once; `cut()` runs `cut_at` s in. Each stream's text, or its error."""

    async def one(number: int) -> str:
        parts, _ = await side.stream(messages=prompt(number), **options)
        return "".join(parts)

    async def later() -> None:
        await asyncio.sleep(cut_at)
        cut()

    results = await asyncio.gather(
        later(), *(one(n) for n in range(streams)), return_exceptions=True
    )
    return list(results[1:])


async def through_a_cut(
    side: Any, streams: int, cut_at: float, cut: Any
) -> tuple[list[str], list[str | BaseException]]:
    """The uninterrupted answers, then each stream's outcome around `cut()`; closes `side`."""
    try:
        answers = await expected(side, streams)
        return answers, await run_streams(side, streams, cut_at, cut)
    finally:
        await side.close()


def resumes(caplog: pytest.LogCaptureFixture) -> int:
    return sum("resuming after UNAVAILABLE" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("side_kind", SIDES)
async def test_kill_9_of_one_replica_mid_answer_every_stream_completes(
    fleet: Fleet, side_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's measure: 17 of 36 streams ended in StreamInterruptedError before."""
    replicas = fleet(3, *ANSWER)
    side = make_side(side_kind, target_of(replicas), KEY, load_balancing="round_robin")
    streams = 30 if side_kind == "async" else 6
    caplog.set_level(logging.INFO, logger="apex_grpc")
    answers, results = await through_a_cut(side, streams, 0.6, replicas[0].kill)
    assert results == answers
    assert resumes(caplog) >= 1  # the kill cut streams that were answering


async def test_with_resume_off_a_kill_gives_the_old_error(fleet: Fleet) -> None:
    replicas = fleet(3, *ANSWER)
    side = make_side(
        "async", target_of(replicas), KEY, load_balancing="round_robin", stream_resume=False
    )
    answers, results = await through_a_cut(side, 12, 0.6, replicas[0].kill)
    cut = [r for r in results if isinstance(r, BaseException)]
    assert cut and all(isinstance(r, mc.StreamInterruptedError) for r in cut), results
    assert "resuming is off" in str(cut[0])
    assert [r for r in results if isinstance(r, str)] == [
        a for a, r in zip(answers, results, strict=True) if isinstance(r, str)
    ]


@pytest.mark.parametrize("side_kind", SIDES)
async def test_a_drain_shorter_than_the_answers_hands_them_over(
    fleet: Fleet, side_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM with a grace period of 0.3 s during answers of 2 s: 8 of 24 streams ended in
    StreamInterruptedError before; now the draining replica's streams go on elsewhere."""
    # Answers of 4 s: the drain takes its settling time (0.2 s or more) before its grace.
    replicas = fleet(3, *LONG_ANSWER, "--grace-period", "0.3")
    side = make_side(side_kind, target_of(replicas), KEY, load_balancing="round_robin")
    streams = 24 if side_kind == "async" else 6
    caplog.set_level(logging.INFO, logger="apex_grpc")
    answers, results = await through_a_cut(side, streams, 0.5, replicas[0].terminate)
    assert results == answers
    assert resumes(caplog) >= 1
    assert replicas[0].process is not None and replicas[0].process.wait(15) == 0
    assert "streams handed over" in replicas[0].log()  # by the server, not by grpc's cancel


@pytest.mark.parametrize("side_kind", SIDES)
async def test_a_connection_reset_mid_stream_resumes_through_a_new_one(
    server_process: Any, proxy: Any, side_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A TCP RST from a proxy on loopback cuts every stream on the connection; each
    continues on the next connection, to the same replica."""
    server: ServerProcess = server_process(*ANSWER)
    middle = proxy(server.port)
    side = make_side(side_kind, middle.target, KEY)
    streams = 8 if side_kind == "async" else 4
    caplog.set_level(logging.INFO, logger="apex_grpc")
    answers, results = await through_a_cut(side, streams, 0.6, middle.reset_all)
    assert results == answers
    assert resumes(caplog) == streams  # every stream was on the connection that was reset


async def test_the_resumed_stream_is_one_stream(server_process: Any, proxy: Any) -> None:
    """One id, one role, one finish_reason, and usage of the whole answer, across a reset."""
    server: ServerProcess = server_process(*ANSWER)
    middle = proxy(server.port)
    async with mc.AsyncApexClient(api_key=KEY, base_url=middle.target, secure=False) as client:
        whole = await client.chat.completions.create(
            messages=prompt(0), metadata={"x-echo-delay-ms": "0"}
        )
        stream = await client.chat.completions.create(messages=prompt(0), stream=True)
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == 5:
                assert middle.reset_all() >= 1
        final = await stream.get_final_response()
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert [c.choices[0].delta.role for c in chunks].count("assistant") == 1
    assert [c.choices[0].finish_reason for c in chunks][-2:] == ["", "stop"]
    assert final.choices[0].message.content == whole.choices[0].message.content
    assert final.usage == whole.usage
    assert len(chunks) == int(CHUNKS)  # the cut fell between chunks: none split, none added


def test_a_stopping_server_ends_the_streams_its_grace_period_leaves_with_unavailable(
    server_process: Any,
) -> None:
    """At the end of the grace period the server ends what is still streaming with an
    UNAVAILABLE of its own that says why (before: grpc's "Cancelling all calls"), and the
    handed-over streams are in its log as such."""
    import grpc

    from apex_grpc_proto.apex.v1 import apex_pb2 as pb
    from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

    server: ServerProcess = server_process(*ANSWER, "--grace-period", "0.3", "--log-level", "INFO")
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        call = stub.ChatCompletionStream(
            pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")]),
            metadata=(("authorization", f"Bearer {KEY}"),),
            timeout=10,
        )
        next(call)
        server.terminate()
        with pytest.raises(grpc.RpcError) as caught:
            for _ in call:
                pass
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "grace period ended before this stream did" in caught.value.details()
    assert server.process is not None and server.process.wait(15) == 0
    assert "1 streams handed over" in server.log()


async def test_an_answer_stored_after_a_resume_is_stored_whole_and_once(
    server_process: Any, proxy: Any
) -> None:
    """The stored completion holds the resumed stream's whole answer, once: the text the
    stream hands back is the whole answer, and the write, retried with its key (as the
    client does when a reply is lost), is stored once, not appended to."""
    server: ServerProcess = server_process(*ANSWER)
    middle = proxy(server.port)
    async with mc.AsyncApexClient(api_key=KEY, base_url=middle.target, secure=False) as client:
        created = await client.chats.create("a chat to keep", metadata={"x-echo-delay-ms": "0"})
        completion_id = created.parsed_completion.id
        (whole,) = await expected(AsyncSide(client), 1)
        stream = await client.chat.completions.create(messages=prompt(0), stream=True)
        async for _ in stream:
            if stream.chunk_count == 10:
                assert middle.reset_all() >= 1
        text = await stream.text()
        assert text == whole
        for _ in range(2):  # the same write again: a retry after a lost reply
            await client.chats.update_completion(
                completion_id, completion_text=text, idempotency_key="store-once-1"
            )
        stored = await client.chats.get_completion(completion_id)
    assert stored.completion_text == whole
