"""The calls the fake receives and the scripted routes that answer them (pure, thread-safe).

A `RecordedCall` is what the fake saw of one call: the request, its metadata,
its deadline, how it ended, and the `Route` that answered it. Routes are tried
in the order they were added; the first whose method and predicate match and
which has calls left answers. A route plays its outcomes in order, one per
call, and repeats its last one after that (until `times` calls, when given);
a callable outcome is called with the call to compute the answer.
(One module: a call names its route and a route keeps its calls.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

import grpc
from google.protobuf.message import Message

from apex_grpc import _methods
from apex_grpc.testing._outcomes import Outcome, ScriptError, as_outcome, check_seconds

_SECRET_KEYS = frozenset({"authorization"})


class RecordedMetadata(Mapping[str, str | bytes]):
    """A call's request metadata by key (the last value of a repeated key; see `get_all`).

    Its repr hides the ``authorization`` value, so a failing assertion never
    prints an API key; reading it (``metadata["authorization"]``) gives it as sent.
    """

    def __init__(self, pairs: tuple[tuple[str, str | bytes], ...]) -> None:
        self.pairs = pairs
        """Every entry, in the order received."""
        self._last = dict(pairs)

    def __getitem__(self, key: str) -> str | bytes:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def get_all(self, key: str) -> list[str | bytes]:
        """Every value sent under `key`, in order."""
        return [value for name, value in self.pairs if name == key]

    def __repr__(self) -> str:
        shown = {k: "***" if k in _SECRET_KEYS else v for k, v in self._last.items()}
        return f"RecordedMetadata({shown!r})"


class RecordedCall:
    """One call the fake received: ``method``, ``request``, ``metadata``, and how it ended."""

    def __init__(
        self,
        method: str,
        request: Message,
        metadata: tuple[tuple[str, str | bytes], ...],
        time_remaining: float | None,
        peer: str = "",
    ) -> None:
        self.method = method
        """The RPC's name, e.g. "ChatCompletion"."""
        self.request = request
        """The request message as the fake decoded it."""
        self.metadata = RecordedMetadata(metadata)
        """The request metadata (``metadata["x-source"]``; the key is in ``authorization``)."""
        self.time_remaining = time_remaining
        """Seconds left of the call's deadline when it arrived (None: no deadline)."""
        self.peer = peer
        """The client's connection as the server saw it (``ipv4:127.0.0.1:PORT``): calls
        with the same peer came over the same connection."""
        self.received_at = time.monotonic()
        """When the fake received it (time.monotonic(): compare two calls' times)."""
        self.ended_at: float | None = None
        """When the fake was done with it (time.monotonic(); None while it runs)."""
        self.route: Route | None = None
        """The scripted route that answered it (None: nothing was scripted for it)."""
        self.code: grpc.StatusCode | None = None
        """How the call ended (None while it runs): the status the fake sent, or
        DEADLINE_EXCEEDED / CANCELLED when its deadline passed or the client cancelled it."""
        self.cancelled = False
        """Whether the call ended before the fake finished it (cancelled, deadline passed)."""
        self.chunks_sent = 0
        """How many stream chunks the fake sent."""
        self._ended = threading.Event()

    @property
    def api_key(self) -> str | None:
        """The API key as it arrived (``authorization: Bearer KEY``), or None without one."""
        value = self.metadata.get("authorization")
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        scheme, _, key = text.partition(" ")
        return key if scheme.lower() == "bearer" else text

    @property
    def ended(self) -> bool:
        """Whether the fake is done with the call (answered, failed or cancelled)."""
        return self._ended.is_set()

    def wait_ended(self, timeout: float = 5.0) -> bool:
        """Block until the call has ended on the fake's side; False if `timeout` passed first.

        A client's cancel reaches the server a little after the client returns,
        so assert ``call.wait_ended() and call.cancelled``.
        """
        return self._ended.wait(timeout)

    async def ended_async(self, timeout: float = 5.0) -> bool:
        """`wait_ended` for async tests (does not block the event loop)."""
        return await asyncio.to_thread(self._ended.wait, timeout)

    def end(self, code: grpc.StatusCode, *, cancelled: bool = False) -> None:
        """Record how the call ended (the fake's server calls this)."""
        if not self._ended.is_set():
            self.code = code
            self.cancelled = cancelled
            self.ended_at = time.monotonic()
            self._ended.set()

    def __repr__(self) -> str:
        state = "running" if self.code is None else self.code.name
        if self.cancelled:
            state = "cancelled"
        return (
            f"RecordedCall({self.method}, {state}, request={{{fields_of(self.request)}}}, "
            f"metadata={self.metadata!r})"
        )


def fields_of(message: Any) -> str:
    """A one-line text form of a message (for error details and reports)."""
    return " ".join(str(message).split()) or "(empty)"


Predicate = Callable[[Any], bool]

Responder = Callable[[RecordedCall], object]
"""A function of the call as received, returning what `Route.reply` takes (a callable reply)."""


@dataclass(frozen=True)
class Computed:
    """A reply computed when the call arrives: `responder(call)`, checked as `reply` checks."""

    method: _methods.Method[Any, Any]
    responder: Responder

    def play(self, call: RecordedCall) -> Outcome:
        """What the responder answers `call` with; ScriptError if the method cannot answer so."""
        return as_outcome(self.method, self.responder(call))


def as_script(method: _methods.Method[Any, Any], value: object) -> Outcome | Computed:
    """What `value` scripts for `method`: a callable is computed when the call arrives."""
    if callable(value):
        return Computed(method, value)
    return as_outcome(method, value)


class Route:
    """Calls of one method (optionally those whose request matches) and what they get.

    Made by ``fake.on(...)``; give it its answers with `reply`.
    """

    def __init__(
        self,
        method: _methods.Method[Any, Any],
        *,
        match: Predicate | None,
        times: int | None,
        delay: float,
        lock: threading.Lock,
    ) -> None:
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ScriptError(f"times must be a positive int or None, got {times!r}")
        if times is not None and times < 1:
            raise ScriptError(f"times must be >= 1 (or None: no limit), got {times}")
        check_seconds("delay", delay)
        self.method = method
        """The RPC the route answers."""
        self.match = match
        """The predicate a request must satisfy (None: every request of the method)."""
        self.times = times
        """How many calls the route answers (None: any number)."""
        self.delay = delay
        """Seconds the fake waits before it answers (a slow server)."""
        self.outcomes: tuple[Outcome | Computed, ...] = ()
        """What successive calls get (set by `reply`)."""
        self.calls: list[RecordedCall] = []
        """The calls this route answered, in order."""
        self._lock = lock

    def reply(self, *answers: object) -> Self:
        """Answer successive calls with `answers` in order, the last one repeated.

        Each answer is a response message, a str (the text of a
        ChatCompletion, or a one-chunk stream), `stream(...)`, `error(...)`,
        or a function of the `RecordedCall` returning one of those: the
        answer is then computed when the call arrives (``lambda call:
        completion(call.request.messages[-1].content)``), and a function
        that raises fails the call with INTERNAL and `FakeApex.verify`.
        """
        if not answers:
            raise ScriptError(f"{self.method.name}: reply() needs at least one answer")
        outcomes = tuple(as_script(self.method, answer) for answer in answers)
        if self.times is not None and len(outcomes) > self.times:
            raise ScriptError(
                f"{self.method.name}: {len(outcomes)} answers for a route limited to "
                f"times={self.times}; the last {len(outcomes) - self.times} could never be sent"
            )
        with self._lock:
            self.outcomes = outcomes
        return self

    @property
    def called(self) -> bool:
        """Whether any call reached this route."""
        return bool(self.calls)

    @property
    def call_count(self) -> int:
        """How many calls this route answered."""
        return len(self.calls)

    def exhausted(self) -> bool:
        """Whether the route has answered all the calls it was scripted for."""
        return self.times is not None and len(self.calls) >= self.times

    def take(self, call: RecordedCall) -> Outcome | Computed:
        """Record `call` as this route's and return its outcome (call under the lock)."""
        outcome = self.outcomes[min(len(self.calls), len(self.outcomes) - 1)]
        self.calls.append(call)
        call.route = self
        return outcome

    def __repr__(self) -> str:
        parts = [self.method.name]
        if self.match is not None:
            parts.append(f"match={getattr(self.match, '__name__', 'predicate')}")
        if self.times is not None:
            parts.append(f"times={self.times}")
        return f"Route({', '.join(parts)}, called {len(self.calls)}x)"


class Router:
    """The routes of one fake, and the calls nothing was scripted for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: list[Route] = []
        self.unscripted: list[RecordedCall] = []
        self.problems: list[str] = []
        """Scripts that broke while answering (a predicate that raised)."""

    def add(self, route: Route) -> Route:
        """Add `route` after the existing ones."""
        with self.lock:
            self.routes.append(route)
        return route

    def choose(self, call: RecordedCall) -> Outcome | None:
        """The outcome for `call`, or None when no route matches (then it is unscripted).

        Raises ScriptError when a route's predicate or callable reply raises,
        or the reply computed is not one the method can send (the call fails,
        naming it).
        """
        with self.lock:
            picked = self._pick(call)
        if not isinstance(picked, Computed):
            return picked
        try:  # outside the lock: a callable reply may look at the fake's calls
            return picked.play(call)
        except Exception as exc:
            problem = f"the callable reply of {call.route!r} raised {exc!r} on {call!r}"
            with self.lock:
                self.problems.append(problem)
            raise ScriptError(problem) from exc

    def _pick(self, call: RecordedCall) -> Outcome | Computed | None:
        for route in self.routes:
            if route.method.name != call.method or route.exhausted() or not route.outcomes:
                continue
            if route.match is not None and not self._matches(route, call):
                continue
            return route.take(call)
        self.unscripted.append(call)
        return None

    def _matches(self, route: Route, call: RecordedCall) -> bool:
        assert route.match is not None
        try:
            return bool(route.match(call.request))
        except Exception as exc:
            problem = f"the match predicate of {route!r} raised {exc!r} on {call!r}"
            self.problems.append(problem)
            raise ScriptError(problem) from exc

    def clear(self) -> None:
        """Forget every route and unscripted call."""
        with self.lock:
            self.routes.clear()
            self.unscripted.clear()
            self.problems.clear()

    def failures(self, *, all_called: bool, all_scripted: bool) -> list[str]:
        """What is wrong with the run so far, one line each (empty: nothing)."""
        with self.lock:
            lines = list(self.problems)
            if all_scripted:
                lines += [f"unscripted call: {call!r}" for call in self.unscripted]
            if all_called:
                lines += [f"never called: {route!r}" for route in self.routes if not route.called]
        return lines
