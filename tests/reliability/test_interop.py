"""The gRPC interop test cases, adapted to Apex's unary and server-streaming RPCs,
run on both clients against the local server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

from ._sides import SIDES, make_side

pytestmark = pytest.mark.oldest

ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\x0a\x0b\x0a\x0b\x0a\x0b")
WEIRD_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def echo(text: str, total: int) -> str:
    return (text * (total // len(text) + 1))[:total]


@pytest.fixture(params=SIDES)
async def side(
    request: pytest.FixtureRequest, echo_target: str, api_key: str
) -> AsyncIterator[Any]:
    s = make_side(request.param, echo_target, api_key)
    yield s
    await s.close()


async def test_empty_unary(side: Any) -> None:
    response = await side.call(lambda c: c.chats.list_deep_research_completions())
    assert isinstance(response, mc.GetCompletionsWithDeepResearcherEntryResponse)


async def test_large_unary(side: Any) -> None:
    prompt = "x" * 271_828
    knobs = (("x-echo-chunks", "1"), ("x-echo-chunk-size", "314159"))
    response = await side.chat(messages=user(prompt), metadata=knobs)
    assert response.choices[0].message.content == echo(prompt, 314_159)


@pytest.mark.parametrize("kind", SIDES)
async def test_server_compressed_responses(
    start_server: Any, api_key: str, proxy: Any, kind: str
) -> None:
    server = start_server(compression="gzip")
    wire = proxy(server.port)
    side = make_side(kind, wire.target, api_key)
    prompt = "squeeze me " * 10
    big = (("x-echo-chunks", "1"), ("x-echo-chunk-size", "300000"))
    try:
        response = await side.chat(messages=user(prompt), metadata=big)
        parts, _ = await side.stream(messages=user(prompt), metadata=big)
    finally:
        await side.close()
    assert response.choices[0].message.content == echo(prompt, 300_000)
    assert "".join(parts) == echo(prompt, 300_000)
    assert wire.bytes_down < 2 * 300_000 / 20  # both answers travelled gzip-compressed


@pytest.mark.parametrize("kind", SIDES)
async def test_client_compressed_unary(
    echo_server: Any, api_key: str, proxy: Any, kind: str
) -> None:
    prompt = "compressible " * 20_000  # 260 kB that gzip shrinks to almost nothing
    knobs = (("x-echo-chunks", "1"),)
    wire = proxy(echo_server.port)
    side = make_side(kind, wire.target, api_key)
    try:
        plain = await side.chat(messages=user(prompt), metadata=knobs)
        sent_plain, wire.bytes_up = wire.bytes_up, 0
        packed = await side.chat(messages=user(prompt), compression=True, metadata=knobs)
        sent_packed = wire.bytes_up
    finally:
        await side.close()
    assert plain.choices[0].message.content == packed.choices[0].message.content == prompt[:16]
    assert sent_plain > len(prompt)
    assert sent_packed < len(prompt) / 20  # gzip on the wire


async def test_server_streaming_in_order(side: Any) -> None:
    for size in (31_415, 9, 2_653, 58_979):
        prompt = f"stream of {size}: " + "abcdefghij" * 7
        parts, _ = await side.stream(
            messages=user(prompt),
            metadata=(("x-echo-chunks", "4"), ("x-echo-chunk-size", str(size))),
        )
        assert [len(p) for p in parts] == [size] * 4
        assert "".join(parts) == echo(prompt, 4 * size)


async def test_empty_stream(side: Any) -> None:
    parts, stream = await side.stream(messages=user("nothing"), metadata=(("x-echo-chunks", "0"),))
    assert parts == []
    final = (
        stream.get_final_response() if side.name == "sync" else await stream.get_final_response()
    )
    assert not final.choices


async def test_custom_metadata_unary(side: Any) -> None:
    info = mc.CallInfo()
    await side.chat(messages=user("hi"), metadata=(ECHO_INITIAL, ECHO_TRAILING), call_info=info)
    assert ECHO_INITIAL in info.initial_metadata
    assert ECHO_TRAILING in info.trailing_metadata


async def test_custom_metadata_stream(side: Any) -> None:
    _, stream = await side.stream(messages=user("hi"), metadata=(ECHO_INITIAL, ECHO_TRAILING))
    initial, trailing = await side.stream_metadata(stream)
    assert ECHO_INITIAL in initial
    assert ECHO_TRAILING in trailing


@pytest.mark.parametrize("stream", [False, True])
async def test_status_code_and_message(side: Any, stream: bool) -> None:
    knobs = (
        ("x-echo-fail-code", "UNKNOWN"),
        ("x-echo-fail-message-bin", WEIRD_MESSAGE.encode()),
    )
    with pytest.raises(mc.UnknownError) as caught:
        if stream:
            await side.stream(messages=user("hi"), metadata=knobs)
        else:
            await side.chat(messages=user("hi"), metadata=knobs)
    assert caught.value.code is grpc.StatusCode.UNKNOWN
    assert caught.value.details == WEIRD_MESSAGE


@pytest.fixture
async def partial_server() -> AsyncIterator[dict[str, str]]:
    """Two servers: one without ApexService at all, one with none of its methods implemented."""
    bare = grpc.aio.server()
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    empty = grpc.aio.server()
    pbg.add_ApexServiceServicer_to_server(pbg.ApexServiceServicer(), empty)
    empty_port = empty.add_insecure_port("127.0.0.1:0")
    await bare.start()
    await empty.start()
    yield {"service": f"127.0.0.1:{bare_port}", "method": f"127.0.0.1:{empty_port}"}
    await bare.stop(0)
    await empty.stop(0)


@pytest.mark.parametrize("missing", ["service", "method"])
@pytest.mark.parametrize("kind", SIDES)
async def test_unimplemented(partial_server: dict[str, str], missing: str, kind: str) -> None:
    side = make_side(kind, partial_server[missing], "k")
    try:
        with pytest.raises(mc.UnimplementedError):
            await side.chat(messages=user("hi"))
        with pytest.raises(mc.UnimplementedError):
            await side.stream(messages=user("hi"))
    finally:
        await side.close()


def server_saw(caplog: pytest.LogCaptureFixture, method: str, status: str) -> bool:
    return any(
        f"/apex.v1.ApexService/{method} {status}" in r.getMessage()
        for r in caplog.records
        if r.name == "apex_grpc_server"
    )


async def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_cancel_after_begin(side: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apex_grpc_server")
    stream = await side.open_stream(messages=user("slow"), metadata=(("x-echo-sleep-ms", "3000"),))
    await asyncio.sleep(0.2)  # the server is now sleeping inside the call
    await side.close_stream(stream)
    assert await wait_until(lambda: server_saw(caplog, "ChatCompletionStream", "CANCELLED"))


async def test_cancel_after_first_response(side: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apex_grpc_server")
    knobs = (("x-echo-chunks", "50"), ("x-echo-delay-ms", "100"))
    stream = await side.open_stream(messages=user("slow"), metadata=knobs)
    first = await side.next_chunk(stream)
    assert first.choices[0].delta.content
    await side.close_stream(stream)
    assert await wait_until(lambda: server_saw(caplog, "ChatCompletionStream", "CANCELLED"))


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout_on_sleeping_server(side: Any, stream: bool) -> None:
    knobs = (("x-echo-sleep-ms", "5000"),)
    started = time.monotonic()
    with pytest.raises(mc.DeadlineExceededError):
        if stream:
            await side.stream(messages=user("zz"), metadata=knobs, timeout=0.3)
        else:
            await side.chat(messages=user("zz"), metadata=knobs, timeout=0.3)
    assert time.monotonic() - started < 0.3 + 0.4


@pytest.mark.parametrize("kind", SIDES)
async def test_per_rpc_credentials(start_server: Any, kind: str) -> None:
    server = start_server(api_keys=frozenset({"key-alice", "key-bob"}))
    side = make_side(kind, server.target, "key-alice")
    try:
        created = await side.call(lambda c: c.chats.create("alice's secret plan"))
        bob = side.client.with_options(api_key="key-bob")
        bob_side = type(side)(bob)
        sessions = await bob_side.call(lambda c: c.chats.list_sessions())
        assert created.parsed_chat.id not in [s.id for s in sessions.chat_sessions]
        mine = await side.call(lambda c: c.chats.list_sessions())
        assert created.parsed_chat.id in [s.id for s in mine.chat_sessions]
        with pytest.raises(mc.AuthenticationError):
            await type(side)(side.client.with_options(api_key="key-eve")).call(
                lambda c: c.chats.list_sessions()
            )
    finally:
        await side.close()


@pytest.mark.parametrize("kind", SIDES)
async def test_bounded_soak(echo_target: str, api_key: str, kind: str) -> None:
    from .conftest import LONG

    calls, streams, fresh = (20_000, 2_000, 300) if LONG else (400, 40, 20)
    side = make_side(kind, echo_target, api_key)
    failures = 0
    try:
        for i in range(calls):
            response = await side.chat(messages=user(f"soak {i}"))
            failures += response.choices[0].message.content != echo(f"soak {i}", 128)
        for i in range(streams):
            parts, _ = await side.stream(messages=user(f"stream {i}"))
            failures += "".join(parts) != echo(f"stream {i}", 128)
    finally:
        await side.close()
    for i in range(fresh):  # a new client (and channel) per call
        one = make_side(kind, echo_target, api_key)
        try:
            response = await one.chat(messages=user(f"fresh {i}"))
            failures += response.choices[0].message.content != echo(f"fresh {i}", 128)
        finally:
            await one.close()
    assert failures == 0
