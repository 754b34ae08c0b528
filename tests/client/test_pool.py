"""The connection pool's decisions, with no I/O: growth, least-loaded choice, learning, shrink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from apex_grpc._methods import CHAT_COMPLETION_STREAM
from apex_grpc._settings.client import ClientSettings
from apex_grpc._transport.pool import ConnectionPool, PooledOpener

from ._builders import prepare_chat

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hi"}]


class FakeChannels:
    """Records what the pool opens and closes."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.closed: list[str] = []
        self.sweeps: list[float] = []
        """When the pool asked for a sweep, each time it asked."""

    def open(self, index: int) -> tuple[str, dict[str, str]]:
        self.opened.append(index)
        return f"channel-{index}", {"Method": f"callable-{index}"}

    def close(self, channel: str) -> None:
        self.closed.append(channel)

    def schedule_sweep(self, when: float) -> None:
        self.sweeps.append(when)


def make_pool(
    limit: int = 2, max_connections: int = 3, idle: float = 10.0
) -> tuple[ConnectionPool[str], FakeChannels, list[float]]:
    channels, now = FakeChannels(), [0.0]
    pool = ConnectionPool(
        channels.open,
        channels.close,
        channels.schedule_sweep,
        max_connections=max_connections,
        stream_limit=limit,
        idle_timeout=idle,
        clock=lambda: now[0],
    )
    return pool, channels, now


def loads(pool: ConnectionPool[str]) -> list[int]:
    return [c.in_flight for c in pool.connections]


def conn(held: tuple[Any, int]) -> Any:
    return held[0]


def test_one_connection_until_it_is_full() -> None:
    pool, channels, _ = make_pool(limit=2)
    first, second = pool.acquire(), pool.acquire()
    assert conn(first) is conn(second) is pool.primary and channels.opened == [0]
    assert (first[1], second[1]) == (0, 1)  # each call's ticket: its place in line there
    third = pool.acquire()  # the primary is full: a second connection, its own channel args
    assert conn(third) is not conn(first) and channels.opened == [0, 1] and loads(pool) == [2, 1]
    assert conn(third).callables == {"Method": "callable-1"} and third[1] == 0


def test_least_loaded_connection_with_room_takes_the_next_call() -> None:
    pool, _, _ = make_pool(limit=3)
    held = [pool.acquire() for _ in range(6)]  # [3, 3]
    pool.release(*held[0])  # [2, 3]
    pool.release(*held[1])  # [1, 3]
    assert loads(pool) == [1, 3]
    assert conn(pool.acquire()) is pool.primary and loads(pool) == [2, 3]
    for connection, ticket in held[3:]:
        pool.release(connection, ticket)  # [2, 0]
    assert conn(pool.acquire()) is pool.connections[1]  # the emptier one, not the first


def test_a_call_is_given_back_once() -> None:
    pool, _, now = make_pool(limit=3)
    held = pool.acquire()
    now[0] = 7.0
    pool.release(*held)
    now[0] = 9.0
    pool.release(*held)  # twice: no effect the second time, idle since the first
    assert loads(pool) == [0] and pool.primary.idle_since == 7.0


def test_past_the_cap_the_least_loaded_connection_takes_it() -> None:
    pool, channels, _ = make_pool(limit=1, max_connections=2)
    a, b = pool.acquire(), pool.acquire()
    c = pool.acquire()  # both full and no more connections: grpc queues it on the least loaded
    assert channels.opened == [0, 1] and conn(c) is conn(a) and loads(pool) == [2, 1]
    pool.release(*a)
    pool.release(*c)
    assert conn(pool.acquire()) is conn(a)  # ties go to the first connection
    del b


def test_a_refusal_teaches_the_limit() -> None:
    pool, channels, _ = make_pool(limit=100, max_connections=4)
    held = [pool.acquire() for _ in range(15)]
    # The server took the first 10 and refused the other 5: each refused call is released,
    # then reported; the calls still in flight that came before it are what the server took.
    for refused in reversed(held[10:]):
        pool.release(*refused)
        pool.refused(*refused)
    assert pool.stream_limit == 10
    retried = pool.acquire()  # the retry goes to a connection with room
    assert conn(retried) is not pool.primary and channels.opened == [0, 1]
    pool.release(*held[3])
    pool.refused(*held[3])  # the limit only ever goes down, and never below 1
    assert pool.stream_limit == 3
    lone, *_ = make_pool(limit=5)
    only = lone.acquire()
    lone.release(*only)
    lone.refused(*only)
    assert lone.stream_limit == 1


def test_calls_queued_behind_a_refusal_do_not_count_as_taken() -> None:
    # 30 calls in flight on a cold connection: the server took 10, refused some of what came
    # next, and grpc queues the rest; only the calls ahead of the refused one were taken.
    pool, _, _ = make_pool(limit=100, max_connections=4)
    held = [pool.acquire() for _ in range(30)]
    pool.release(*held[10])
    pool.refused(*held[10])
    assert pool.stream_limit == 10  # not 29, what was in flight


def test_idle_extra_connections_close_after_the_idle_timeout_and_the_primary_stays() -> None:
    pool, channels, now = make_pool(limit=1, idle=10.0)
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert len(pool.connections) == 3
    now[0] = 5.0
    pool.release(*second)  # idle since t=5
    assert pool.sweep() == 15.0  # the busy third is looked at again a timeout from now
    now[0] = 14.9
    assert pool.sweep() is not None and len(pool.connections) == 3
    now[0] = 15.0
    pool.release(*first)  # the primary goes idle too: it is never closed
    pool.sweep()
    assert channels.closed == ["channel-1"] and len(pool.connections) == 2
    pool.release(*third)
    now[0] = 40.0
    assert pool.sweep() is None  # nothing extra is left to watch
    assert channels.closed == ["channel-1", "channel-2"] and pool.connections == [pool.primary]
    grown = [pool.acquire(), pool.acquire()]  # growing again opens a channel of a new index
    assert channels.opened == [0, 1, 2, 3] and conn(grown[1]).index == 1


def test_a_busy_connection_is_never_closed() -> None:
    pool, channels, now = make_pool(limit=1, idle=1.0)
    pool.acquire()
    busy = conn(pool.acquire())
    now[0] = 100.0
    pool.sweep()
    assert channels.closed == [] and busy in pool.connections


def test_close_hands_back_every_channel() -> None:
    pool, _, _ = make_pool(limit=1)
    pool.acquire()
    pool.acquire()
    assert pool.close() == ["channel-0", "channel-1"] and pool.connections == []


def test_the_primary_is_connection_0_with_its_own_callables_and_repr_shows_the_loads() -> None:
    pool, _, _ = make_pool(limit=1)
    assert pool.primary.index == 0 and pool.primary.callables == {"Method": "callable-0"}
    pool.acquire()
    pool.acquire()
    pool.acquire()
    assert repr(pool) == "<ConnectionPool limit=1 in flight per connection: [1, 1, 1]>"


def test_the_next_sweep_is_due_when_the_first_idle_connection_expires() -> None:
    pool, _, now = make_pool(limit=1, idle=10.0)
    held = [pool.acquire() for _ in range(3)]
    now[0] = 2.0
    pool.release(*held[1])  # due at 12
    now[0] = 5.0
    pool.release(*held[2])  # due at 15
    assert pool.sweep() == 12.0  # the earliest, not the last one looked at


def test_one_sweep_at_a_time_watches_the_extra_connections() -> None:
    pool, channels, now = make_pool(limit=1, max_connections=4, idle=10.0)
    first = pool.acquire()
    assert channels.sweeps == []  # the primary is never swept
    now[0] = 1.0
    held = [first, pool.acquire()]
    assert channels.sweeps == [11.0]  # the first extra connection asks for a sweep
    now[0] = 2.0
    held.append(pool.acquire())
    assert channels.sweeps == [11.0]  # a second one is watched by the same sweep
    now[0] = 5.0
    for ticket in held:
        pool.release(*ticket)  # idle from t=5: due at 15
    now[0] = 12.0
    assert pool.sweep() == 15.0  # the caller schedules the next one itself
    busy = [pool.acquire() for _ in range(4)]  # a new connection while that one is pending
    assert len(pool.connections) == 4 and channels.sweeps == [11.0]
    for ticket in busy:
        pool.release(*ticket)
    now[0] = 30.0
    assert pool.sweep() is None and pool.connections == [pool.primary]
    pool.acquire()
    pool.acquire()  # growing again, with no sweep pending, asks for one again
    assert channels.sweeps == [11.0, 40.0]


class FakeCall:
    """What a streaming multi-callable returns, as far as the opener uses it."""

    def __init__(self, request: object, kwargs: dict[str, object]) -> None:
        self.request, self.kwargs = request, kwargs
        self.callbacks: list[Callable[[object], None]] = []

    def add_done_callback(self, callback: Callable[[object], None]) -> None:
        self.callbacks.append(callback)

    def done(self) -> None:
        for callback in self.callbacks:
            callback(self)


def opener_pool(limit: int = 1, fail: bool = False) -> tuple[ConnectionPool[str], PooledOpener]:
    def start(request: object, **kwargs: object) -> FakeCall:
        if fail:
            raise RuntimeError("channel closed")
        return FakeCall(request, kwargs)

    method = CHAT_COMPLETION_STREAM
    pool = ConnectionPool(
        lambda index: (f"channel-{index}", {method: start}),
        lambda channel: None,
        lambda when: None,
        max_connections=3,
        stream_limit=limit,
        idle_timeout=10.0,
    )
    settings = ClientSettings.create(environ={}, api_key="k", compression=True)
    prepared = prepare_chat(settings, {"messages": USER, "wait_for_ready": True}, stream=True)
    return pool, PooledOpener(pool, prepared)


def test_each_attempt_opens_on_a_connection_with_the_calls_arguments() -> None:
    pool, opener = opener_pool()
    call = opener(2.5)
    assert call.request.messages[0].content == "hi"
    assert call.kwargs["timeout"] == 2.5
    assert call.kwargs["compression"] is grpc.Compression.Gzip
    assert call.kwargs["wait_for_ready"] is True
    assert ("authorization", "Bearer k") in call.kwargs["metadata"]
    assert loads(pool) == [1]


def test_an_attempts_slot_is_given_back_once_whoever_ends_it_first() -> None:
    pool, opener = opener_pool(limit=2)
    first = opener(None)
    assert loads(pool) == [1]
    second = opener(None)  # a new attempt gives back the previous one's slot
    assert loads(pool) == [1]
    first.done()  # grpc reports the old attempt over: already given back
    assert loads(pool) == [1]
    second.done()
    assert loads(pool) == [0]
    opener.release()  # and the stream closing afterwards changes nothing
    assert loads(pool) == [0]
    opener(None)
    opener.release()
    assert loads(pool) == [0]


def test_a_refused_attempt_teaches_the_pool_the_limit_of_its_connection() -> None:
    pool, opener = opener_pool(limit=100)
    opener.refused()  # no attempt yet: nothing to report
    assert pool.stream_limit == 100
    others = [pool.acquire() for _ in range(4)]
    opener(None)
    opener.release()
    opener.refused()
    assert pool.stream_limit == 4 and len(others) == 4


def test_an_attempt_that_cannot_start_gives_its_slot_back() -> None:
    pool, opener = opener_pool(fail=True)
    with pytest.raises(RuntimeError, match="channel closed"):
        opener(1.0)
    assert loads(pool) == [0]
