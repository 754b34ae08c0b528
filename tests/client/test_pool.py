"""The connection pool's decisions, with no I/O: growth, least-loaded choice, learning, shrink."""

from __future__ import annotations

import pytest

from apex_grpc._transport.pool import ConnectionPool

pytestmark = pytest.mark.oldest


class FakeChannels:
    """Records what the pool opens and closes."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.closed: list[str] = []

    def open(self, index: int) -> tuple[str, dict[str, str]]:
        self.opened.append(index)
        return f"channel-{index}", {"Method": f"callable-{index}"}

    def close(self, channel: str) -> None:
        self.closed.append(channel)


def make_pool(
    limit: int = 2, max_connections: int = 3, idle: float = 10.0
) -> tuple[ConnectionPool[str], FakeChannels, list[float]]:
    channels, now = FakeChannels(), [0.0]
    pool = ConnectionPool(
        channels.open,
        channels.close,
        max_connections=max_connections,
        stream_limit=limit,
        idle_timeout=idle,
        clock=lambda: now[0],
    )
    return pool, channels, now


def loads(pool: ConnectionPool[str]) -> list[int]:
    return [c.in_flight for c in pool.connections]


def test_one_connection_until_it_is_full() -> None:
    pool, channels, _ = make_pool(limit=2)
    first, second = pool.acquire(), pool.acquire()
    assert first is second is pool.primary and channels.opened == [0]
    third = pool.acquire()  # the primary is full: a second connection, its own channel args
    assert third is not first and channels.opened == [0, 1] and loads(pool) == [2, 1]
    assert third.callables == {"Method": "callable-1"}


def test_least_loaded_connection_with_room_takes_the_next_call() -> None:
    pool, _, _ = make_pool(limit=3)
    held = [pool.acquire() for _ in range(6)]  # [3, 3]
    pool.release(held[0])  # [2, 3]
    pool.release(held[1])  # [1, 3]
    assert loads(pool) == [1, 3]
    assert pool.acquire() is pool.primary and loads(pool) == [2, 3]
    for connection in held[3:]:
        pool.release(connection)  # [2, 0]
    assert pool.acquire() is pool.connections[1]  # the emptier one, not the first


def test_past_the_cap_the_least_loaded_connection_takes_it() -> None:
    pool, channels, _ = make_pool(limit=1, max_connections=2)
    a, b = pool.acquire(), pool.acquire()
    c = pool.acquire()  # both full and no more connections: grpc queues it on the least loaded
    assert channels.opened == [0, 1] and c is a and loads(pool) == [2, 1]
    pool.release(a)
    pool.release(c)
    assert pool.acquire() is a  # ties go to the first connection
    del b


def test_a_refusal_teaches_the_limit() -> None:
    pool, channels, _ = make_pool(limit=100, max_connections=4)
    held = [pool.acquire() for _ in range(15)]
    # The server took 10 and refused the other 5: each refused call is released, then reported.
    for refused in held[10:]:
        pool.release(refused)
        pool.refused(refused)
    assert pool.stream_limit == 10
    retried = pool.acquire()  # the retry goes to a connection with room
    assert retried is not pool.primary and channels.opened == [0, 1]
    pool.release(held[0])
    pool.refused(held[0])  # the limit only ever goes down, and never below 1
    assert pool.stream_limit == 9
    lone, *_ = make_pool(limit=5)
    only = lone.acquire()
    lone.release(only)
    lone.refused(only)
    assert lone.stream_limit == 1


def test_idle_extra_connections_close_after_the_idle_timeout_and_the_primary_stays() -> None:
    pool, channels, now = make_pool(limit=1, idle=10.0)
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert len(pool.connections) == 3
    now[0] = 5.0
    pool.release(second)  # idle since t=5
    assert pool.sweep() == 15.0  # the busy third is looked at again a timeout from now
    now[0] = 14.9
    assert pool.sweep() is not None and len(pool.connections) == 3
    now[0] = 15.0
    pool.release(first)  # the primary goes idle too: it is never closed
    pool.sweep()
    assert channels.closed == ["channel-1"] and len(pool.connections) == 2
    pool.release(third)
    now[0] = 40.0
    assert pool.sweep() is None  # nothing extra is left to watch
    assert channels.closed == ["channel-1", "channel-2"] and pool.connections == [pool.primary]
    grown = [pool.acquire(), pool.acquire()]  # growing again opens a channel of a new index
    assert channels.opened == [0, 1, 2, 3] and grown[1].index == 1


def test_a_busy_connection_is_never_closed() -> None:
    pool, channels, now = make_pool(limit=1, idle=1.0)
    pool.acquire()
    busy = pool.acquire()
    now[0] = 100.0
    pool.sweep()
    assert channels.closed == [] and busy in pool.connections


def test_close_hands_back_every_channel() -> None:
    pool, _, _ = make_pool(limit=1)
    pool.acquire()
    pool.acquire()
    assert pool.close() == ["channel-0", "channel-1"] and pool.connections == []
