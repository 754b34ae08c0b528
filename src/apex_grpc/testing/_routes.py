"""Which scripted route answers a call, and with which outcome (pure, thread-safe).

Routes are tried in the order they were added; the first whose method and
predicate match and which has calls left answers. A route plays its
outcomes in order, one per call, and repeats its last one after that
(until `times` calls, when given).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

from apex_grpc import _methods
from apex_grpc.testing._outcomes import Outcome, ScriptError, as_outcome, check_seconds
from apex_grpc.testing._recording import RecordedCall

Predicate = Callable[[Any], bool]


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
        self.outcomes: tuple[Outcome, ...] = ()
        """What successive calls get (set by `reply`)."""
        self.calls: list[RecordedCall] = []
        """The calls this route answered, in order."""
        self._lock = lock

    def reply(self, *answers: object) -> Self:
        """Answer successive calls with `answers` in order, the last one repeated.

        Each answer is a response message, a str (the text of a
        ChatCompletion, or a one-chunk stream), `stream(...)` or `error(...)`.
        """
        if not answers:
            raise ScriptError(f"{self.method.name}: reply() needs at least one answer")
        outcomes = tuple(as_outcome(self.method, answer) for answer in answers)
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

    def take(self, call: RecordedCall) -> Outcome:
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

        Raises ScriptError when a route's predicate raises (the call fails, naming it).
        """
        with self.lock:
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
