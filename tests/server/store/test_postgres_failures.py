"""When PostgreSQL goes away: restarted under writes, stopped, or every connection held.

A PostgreSQL of this module's own (it is restarted and stopped), real servers on
loopback, the default client or a raw stub (which does not retry, so the status the
server chose is seen). Skipped where PostgreSQL is not installed; failing on CI.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._runtime.store_monitor import HEALTH_SERVICE

WAIT_S = 1.0
"""The servers' store_wait_s: how long a call waits for a connection or a lock."""
SLACK_S = 3.0
"""What a loaded 2-core machine may add to a wait (thread and event-loop scheduling)."""


@pytest.fixture(scope="module")
def own_postgres(local_postgres: Any) -> Iterator[Any]:
    """A PostgreSQL of this module's own, to restart and stop (the session's is shared)."""
    if not hasattr(local_postgres, "restart"):
        pytest.skip("$APEX_GRPC_TEST_POSTGRES is shared: this module restarts its own")
    from tools.local_postgres import LocalPostgres

    with LocalPostgres(durable=False) as server:
        yield server


@pytest.fixture
def own_url(own_postgres: Any) -> Iterator[str]:
    """A fresh database on the module's PostgreSQL (which is running again at teardown)."""
    yield own_postgres.create_database(f"apex_fail_{time.monotonic_ns()}")
    if not own_postgres.running:
        own_postgres.start_server()


def health_of(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return int(stub.Check(request, timeout=5).status)


def wait_for(condition: Callable[[], bool], within_s: float) -> float:
    """Seconds until `condition()` held (fails after `within_s`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"not within {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_restart_under_writes_is_invisible_to_the_default_client(
    start_server: Any, own_postgres: Any, own_url: str, api_key: str
) -> None:
    server = start_server(database_url=own_url, store_wait_s=WAIT_S)
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write(client: mc.ApexClient, worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:  # 4 writers x 5 writes/s: 20 writes/s, some always in flight
                chat = client.chats.create(f"write {worker}-{n}").parsed_chat
                acknowledged.append(chat.id)
            except Exception as error:  # the client must see none
                failures.append(error)
            n += 1
            stop.wait(0.2)

    with mc.ApexClient(api_key=api_key, base_url=server.target, secure=False) as client:
        with ThreadPoolExecutor(4) as pool:
            writers = [pool.submit(write, client, worker) for worker in range(4)]
            time.sleep(1.5)
            before = len(acknowledged)
            own_postgres.restart()
            time.sleep(3.0)
            stop.set()
            for writer in writers:
                writer.result()
        assert failures == []
        assert before >= 5, "the writes had not started before the restart"
        assert len(acknowledged) >= before + 10, "the writes did not go on after the restart"
        listed = {chat.id for chat in client.chats.list_sessions().chat_sessions}
    assert set(acknowledged) <= listed


def test_a_stopped_database_is_unavailable_in_seconds_and_only_the_store_stops_serving(
    start_server: Any,
    own_postgres: Any,
    own_url: str,
    auth: Any,
    chat: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="apex_grpc_server")
    server = start_server(database_url=own_url, store_wait_s=WAIT_S, metrics_port=0, job_poll_s=0.2)
    metrics = f"http://127.0.0.1:{server.metrics_port}/metrics"

    def store_up() -> str:
        text = urllib.request.urlopen(metrics, timeout=5).read().decode()
        return next(line for line in text.splitlines() if line.startswith("apex_server_store_up "))

    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    wait_for(lambda: health_of(server.target, HEALTH_SERVICE) == serving, 10)
    assert store_up() == "apex_server_store_up 1.0"
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth)  # pooled, then stale
        own_postgres.stop_server()
        for call in (
            lambda: stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth),
            lambda: stub.CreateChatAndCompletion(
                pb.CreateChatAndCompletionRequest(user_prompt="lost?"), metadata=auth
            ),
        ):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
            assert time.monotonic() - started < WAIT_S + SLACK_S
            assert "password" not in caught.value.details()
        wait_for(lambda: health_of(server.target, HEALTH_SERVICE) == not_serving, 5)
        assert health_of(server.target, "") == serving  # the replica stays in rotation
        assert store_up() == "apex_server_store_up 0.0"
        assert stub.ChatCompletion(chat("no database needed"), metadata=auth).choices
        own_postgres.start_server()
        wait_for(lambda: health_of(server.target, HEALTH_SERVICE) == serving, 5)
        healed = wait_for(
            lambda: bool(
                stub.CreateChatAndCompletion(
                    pb.CreateChatAndCompletionRequest(user_prompt="back"), metadata=auth
                ).parsed_chat.id
            ),
            5,
        )
    assert healed < 2.0 + SLACK_S
    assert store_up() == "apex_server_store_up 1.0"
    # The job runner polled the store a dozen times meanwhile: one line says so, no traceback.
    claims = [r for r in caplog.records if "deep-research jobs" in r.getMessage()]
    assert len(claims) == 1, [r.getMessage() for r in claims]
    assert claims[0].levelno == logging.WARNING and claims[0].exc_info is None


def test_every_connection_held_by_a_lock_is_resource_exhausted_with_a_hint_in_seconds(
    start_server: Any, postgres_url: str, auth: Any
) -> None:
    import psycopg

    server = start_server(database_url=postgres_url, store_wait_s=WAIT_S)
    with psycopg.connect(postgres_url) as locker, grpc.insecure_channel(server.target) as channel:
        locker.execute("LOCK TABLE chats IN ACCESS EXCLUSIVE MODE")  # held until rollback
        stub = pb_grpc.ApexServiceStub(channel)

        def read() -> tuple[grpc.StatusCode, dict[str, Any], float]:
            started = time.monotonic()
            try:
                stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth, timeout=30)
            except grpc.RpcError as error:
                trailing = dict(error.trailing_metadata() or ())
                return error.code(), trailing, time.monotonic() - started
            return grpc.StatusCode.OK, {}, time.monotonic() - started

        with ThreadPoolExecutor(14) as pool:  # more calls than the pool's 10 connections
            outcomes = list(pool.map(lambda _: read(), range(14)))
        locker.rollback()
    for code, trailing, took in outcomes:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert int(trailing["grpc-retry-pushback-ms"]) > 0
        assert took < 2 * WAIT_S + SLACK_S  # a lock wait, then at most one pool wait
    assert stub_ok(server.target, auth)  # the lock gone, the same server answers


def stub_ok(target: str, auth: Any) -> bool:
    with grpc.insecure_channel(target) as channel:
        pb_grpc.ApexServiceStub(channel).GetChatSessions(
            pb.GetChatSessionsRequest(), metadata=auth, timeout=10
        )
    return True


def terminate_waiting(url: str, statement: str, within_s: float = 10.0) -> int:
    """Terminate the backends whose `statement` (a LIKE pattern) waits for a lock, once one does."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND query LIKE %s",
                (statement,),
            ).fetchone()
            if row and row[0]:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("no call waited for the lock")


@pytest.mark.parametrize(
    ("key", "expected"), [(None, grpc.StatusCode.UNAVAILABLE), ("key-1", grpc.StatusCode.OK)]
)
def test_a_connection_lost_mid_call_is_run_again_unless_an_unkeyed_write(
    start_server: Any, postgres_url: str, auth: Any, key: str | None, expected: grpc.StatusCode
) -> None:
    import psycopg

    server = start_server(database_url=postgres_url, store_wait_s=5.0)
    metadata = (*auth, ("idempotency-key", key)) if key else auth
    with psycopg.connect(postgres_url) as locker, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        locker.execute("LOCK TABLE chats IN ACCESS EXCLUSIVE MODE")
        read = stub.GetChatSessions.future(pb.GetChatSessionsRequest(), metadata=auth)
        assert terminate_waiting(postgres_url, "SELECT%") == 1
        request = pb.CreateChatAndCompletionRequest(user_prompt="once")
        write = stub.CreateChatAndCompletion.future(request, metadata=metadata)
        assert terminate_waiting(postgres_url, "%INSERT%") == 1
        locker.rollback()
        assert read.result(timeout=10).chat_sessions == []  # the read ran again
        if expected == grpc.StatusCode.OK:
            write.result(timeout=10)
        else:
            assert write.exception(timeout=10).code() == expected
            assert "idempotency-key" in write.exception().details()
        sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth)
    assert len(sessions.chat_sessions) == (1 if key else 0)


async def test_connections_the_database_hung_up_on_are_replaced_before_use(
    own_postgres: Any, own_url: str, tmp_path: Any
) -> None:
    from apex_grpc_server._store.postgres.store import PostgresStore

    store = await PostgresStore.open(own_url, pool_size=3, wait_s=WAIT_S)
    try:
        await store.db.pool.open(wait=True)
        async with store.db.read() as a, store.db.read() as b, store.db.read() as c:
            for cursor in (a, b, c):  # three connections made, then back in the pool
                await cursor.execute("SELECT 1")
        own_postgres.restart()
        await asyncio.sleep(0.2)  # the servers' goodbyes reach the idle connections
        for _ in range(3):  # none of them is lent out: the pool opens new ones
            assert await store.chats.of_user("someone", "") == []
    finally:
        await store.close()
