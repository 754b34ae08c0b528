"""Channel lifetime: one channel per client, event-loop changes, fork, threads, interceptors,
and the logger (which never prints the key)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

import apex_grpc as mc
from apex_grpc._transport.channels import FORK_SAFE_GRPC, GRPC_VERSION
from apex_grpc.testing import FakeApex, Reply, completion, error

from .conftest import KEY, Client, chunks, echo, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]


def chat_and_stream(fake: FakeApex) -> None:
    """Chats echo the last message; streams send five chunks."""
    fake.on("ChatCompletion").reply(echo)
    fake.on("ChatCompletionStream").reply(chunks())


async def test_one_channel_for_all_calls(either_client: Client, apex_fake: FakeApex) -> None:
    chat_and_stream(apex_fake)
    channel = either_client.channel
    for _ in range(3):
        await settle(either_client.chat.completions.create(messages=USER))
        stream = await settle(either_client.chat.completions.create(messages=USER, stream=True))
        await settle(stream.until_done())
    assert either_client.channel is channel


def test_thread_safe_under_concurrent_use(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    chat_and_stream(apex_fake)

    def work(i: int) -> str:
        text = client.chat.completions.create(messages=[{"role": "user", "content": f"m{i}"}])
        streamed = client.chat.completions.create(messages=USER, stream=True).text()
        return text.choices[0].message.content + "|" + streamed

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(64)))
    assert results == [f"m{i}|c0 c1 c2 c3 c4 " for i in range(64)]


def test_async_client_survives_a_change_of_event_loop(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(echo)
    client = mc.AsyncApexClient(api_key=KEY, base_url=apex_fake.target, secure=False)

    async def call() -> tuple[str, object]:
        response = await client.chat.completions.create(messages=USER)
        return response.choices[0].message.content, client.channel

    first, channel_a = asyncio.run(call())
    second, channel_b = asyncio.run(call())
    assert first == second == "hello"
    assert channel_a is not channel_b  # a channel belongs to the loop that made it
    asyncio.run(client.close())


def test_async_client_used_from_two_loops_at_once(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(echo)
    client = mc.AsyncApexClient(api_key=KEY, base_url=apex_fake.target, secure=False)

    def in_thread() -> list[str]:
        async def run() -> list[str]:
            out = []
            for _ in range(20):
                response = await client.chat.completions.create(messages=USER)
                out.append(response.choices[0].message.content)
            return out

        return asyncio.run(run())

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: in_thread(), range(2)))
    assert results == [["hello"] * 20] * 2


async def test_async_client_built_outside_the_loop(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(echo)
    client = await asyncio.to_thread(
        mc.AsyncApexClient, api_key=KEY, base_url=apex_fake.target, secure=False
    )
    response = await client.chat.completions.create(messages=USER)
    assert response.choices[0].message.content == "hello"
    await client.aclose()


FORK_PARENT = Path(__file__).with_name("_fork_parent.py")


def test_sync_client_works_in_a_forked_child(apex_fake: FakeApex) -> None:
    # The parent side runs in a fresh interpreter. grpc runs its fork handlers only when no
    # other thread is inside gRPC at fork time ("Other threads are currently calling into
    # gRPC, skipping fork() handlers"), and without them the child's call can hang. In the
    # test process the fake's thread, session servers and channels of earlier
    # tests are such threads: with one thread making calls, 14 of 60 forks hung.
    apex_fake.on("ChatCompletion").reply(echo)
    run = subprocess.run(
        [sys.executable, str(FORK_PARENT), apex_fake.target, KEY],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "skipping fork() handlers" not in run.stderr
    report = json.loads(run.stdout)
    status, result, child_pid, own_connections = report["child"]
    if GRPC_VERSION < FORK_SAFE_GRPC:
        # Old grpcio cannot serve a forked child: a clear error, not a hang.
        assert status == "error" and "ForkError" in result and "grpcio>=1.80" in result, report
        return
    assert (status, result) == ("ok", "hello"), report
    assert own_connections, "the child's call went on the parent's connections"
    assert child_pid != report["parent_pid"]
    assert report["parent_after"] == "hello"


class _AddHeader(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def _with(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), ("x-intercepted", "sync")]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with(details), request)


class _Details:
    def __init__(self, d: Any, metadata: Any) -> None:
        self.method, self.timeout, self.credentials = d.method, d.timeout, d.credentials
        self.wait_for_ready, self.metadata = d.wait_for_ready, metadata


class _AioAddHeader(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), ("x-intercepted", "aio"))
        return await continuation(_Details(details, metadata), request)


def test_sync_interceptors_see_every_call(apex_fake: FakeApex) -> None:
    chat_and_stream(apex_fake)
    with mc.ApexClient(
        api_key=KEY, base_url=apex_fake.target, secure=False, interceptors=[_AddHeader()]
    ) as c:
        c.chat.completions.create(messages=USER)
        c.chat.completions.create(messages=USER, stream=True).until_done()
    assert [s.metadata.get("x-intercepted") for s in apex_fake.requests] == ["sync", "sync"]


async def test_aio_interceptors_see_every_call(apex_fake: FakeApex) -> None:
    apex_fake.on("GetChatSessions").reply(mc.GetChatSessionsResponse())
    async with mc.AsyncApexClient(
        api_key=KEY, base_url=apex_fake.target, secure=False, interceptors=[_AioAddHeader()]
    ) as c:
        await c.chats.list_sessions()
    assert apex_fake.requests[0].metadata.get("x-intercepted") == "aio"


async def test_debug_log_line_per_attempt_without_the_key(
    either_client: Client, apex_fake: FakeApex, caplog: pytest.LogCaptureFixture
) -> None:
    second_id = (("x-request-id", "req-2"),)
    apex_fake.on("ChatCompletion").reply(
        error("UNAVAILABLE", f"echo {KEY[:4]}"),
        Reply(completion("hello"), initial_metadata=second_id),
    )
    apex_fake.on("ChatCompletionStream").reply(chunks())
    with caplog.at_level(logging.DEBUG, logger="apex_grpc"):
        await settle(either_client.chat.completions.create(messages=USER))
        stream = await settle(either_client.chat.completions.create(messages=USER, stream=True))
        await settle(stream.until_done())
    lines = [r.getMessage() for r in caplog.records if r.name == "apex_grpc"]
    assert len(lines) == 3, lines
    assert "status=UNAVAILABLE" in lines[0] and "attempt=1" in lines[0]
    assert "status=OK" in lines[1] and "attempt=2" in lines[1] and "request_id=req-2" in lines[1]
    assert "ChatCompletionStream" in lines[2] and "chunks=5" in lines[2]
    assert all("duration_ms=" in line for line in lines)
    assert not any(KEY in line for line in caplog.text.splitlines())


def test_env_switches_the_logger_on(apex_fake: FakeApex, tmp_path: Any) -> None:
    apex_fake.on("GetChatSessions").reply(mc.GetChatSessionsResponse())
    code = (
        "import apex_grpc as mc;"
        f"c = mc.ApexClient(api_key={KEY!r}, base_url={apex_fake.target!r}, secure=False);"
        "c.chats.list_sessions()"
    )
    env = {**os.environ, "APEX_GRPC_LOG": "debug", "GRPC_VERBOSITY": "debug"}
    env.pop("GRPC_TRACE", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "rpc /apex.v1.ApexService/GetChatSessions status=OK" in out.stderr
    assert KEY not in out.stderr and KEY not in out.stdout

    # grpc core's own header tracers print every header; the client says so once.
    traced = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "GRPC_TRACE": "api"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert traced.returncode == 0
    assert traced.stderr.count("makes grpc core print request headers") == 1


async def test_wait_until_ready(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient], apex_fake: FakeApex
) -> None:
    alive = client_type(api_key=KEY, base_url=apex_fake.target, secure=False)
    await settle(alive.wait_until_ready(timeout=5))
    await settle(alive.close())
    dead = client_type(api_key=KEY, base_url="127.0.0.1:9", secure=False)
    with pytest.raises(mc.UnavailableError):
        await settle(dead.wait_until_ready(timeout=0.3))
    await settle(dead.close())


async def test_unreachable_server_is_unavailable_not_a_hang(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient],
) -> None:
    policy = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
    c = client_type(api_key=KEY, base_url="127.0.0.1:9", secure=False, retry=policy)
    with pytest.raises(mc.UnavailableError) as caught:
        await settle(c.chat.completions.create(messages=USER, timeout=5))
    assert caught.value.attempts == 3
    stream = await settle(c.chat.completions.create(messages=USER, stream=True, timeout=5))
    with pytest.raises(mc.UnavailableError):
        await settle(stream.until_done())
    await settle(c.close())


def test_close_from_another_thread_during_a_stream(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(100, delay=0.02))
    client = mc.ApexClient(api_key=KEY, base_url=apex_fake.target, secure=False)
    stream = client.chat.completions.create(messages=USER, stream=True)
    next(stream)
    threading.Timer(0.1, client.close).start()
    with pytest.raises(mc.ApexError):
        stream.until_done()
