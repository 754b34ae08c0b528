"""The fake's grpc.aio server: apex.v1.ApexService on 127.0.0.1, in an event loop of its own.

It runs in a daemon thread, so sync tests (and async tests on their own
loop) call it over a real loopback channel: deadlines, cancellation,
metadata and retries behave as against a real server.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from apex_grpc import _methods
from apex_grpc.testing._outcomes import Fail, Outcome, Reply, ScriptError, Stream
from apex_grpc.testing._routes import RecordedCall, fields_of

START_TIMEOUT_S = 10.0
Context = grpc.aio.ServicerContext[Any, Any]

Choose = Callable[[RecordedCall], Outcome | None]
"""Given the call as received, the outcome to play (None: nothing was scripted)."""


class FakeServer:
    """Serves every RPC of apex.v1.ApexService by asking `choose` what to do.

    options: grpc server options (``grpc.max_concurrent_streams``...).
    """

    def __init__(
        self,
        choose: Choose,
        record: Callable[[RecordedCall], None],
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._choose = choose
        self._record = record
        self._options = list(options)
        self._deadlines: dict[str, deque[float]] = {}
        """Per client connection, the deadlines received last (used by the loop thread only)."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="apex-fake", daemon=True)
        self.port = 0

    def start(self) -> None:
        """Serve; returns once the server listens."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the fake Apex server did not start within {START_TIMEOUT_S}s")
        if self._failed is not None:
            raise RuntimeError("the fake Apex server could not start") from self._failed

    def stop(self) -> None:
        """Stop at once (calls in flight are cancelled) and end the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by start()
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = grpc.aio.server(options=self._options)
        handlers = {m.name: self._handler(m) for m in _methods.ALL_METHODS}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_methods.SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    def _handler(self, method: _methods.Method[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method),
                request_deserializer=method.request_type.FromString,
                response_serializer=method.response_type.SerializeToString,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(method),
            request_deserializer=method.request_type.FromString,
            response_serializer=_serialize,
        )

    def _receive(
        self, method: _methods.Method[Any, Any], request: Message, context: Any
    ) -> tuple[RecordedCall, Outcome]:
        peer = context.peer()  # read first: grpc.aio may fail on peer() after a cancel
        call = RecordedCall(
            method.name,
            request,
            tuple(context.invocation_metadata() or ()),
            self._asked(peer, context.time_remaining()),
            peer=peer,
        )
        self._record(call)
        try:
            outcome = self._choose(call)
        except ScriptError as exc:
            return call, Fail(grpc.StatusCode.INTERNAL, f"apex_grpc.testing: {exc}")
        if outcome is None:
            return call, Fail(
                grpc.StatusCode.UNIMPLEMENTED,
                f"apex_grpc.testing: nothing was scripted for {method.name} "
                f"(request: {fields_of(request)}); script it with "
                f'fake.on("{method.name}").reply(...)',
            )
        return call, outcome

    def _asked(self, peer: str, remaining: float | None) -> float | None:
        """`asked_timeout` of a deadline received on `peer`'s connection."""
        if remaining is None:
            return None
        seen = self._deadlines.setdefault(peer, deque(maxlen=DEADLINES_KEPT))
        reused = any(
            abs(remaining - earlier) <= REUSE_WINDOW * remaining + 0.05 for earlier in seen
        )
        seen.append(remaining)
        return asked_timeout(remaining, maybe_reused=reused)

    def _unary(self, method: _methods.Method[Any, Any]) -> Any:
        async def handle(request: Message, context: Context) -> Any:
            call, outcome = self._receive(method, request, context)
            try:
                await _wait(call)
                if isinstance(outcome, Fail):
                    await _abort(call, context, outcome)
                assert isinstance(outcome, Reply)  # as_outcome gives unary methods no Stream
                if outcome.initial_metadata:
                    await context.send_initial_metadata(outcome.initial_metadata)
                if outcome.trailing_metadata:
                    context.set_trailing_metadata(outcome.trailing_metadata)
                call.end(grpc.StatusCode.OK)
                return outcome.message
            except asyncio.CancelledError:
                # The client cancelled, or its deadline passed: grpc.aio cancels the handler.
                _cut_short(call)
                raise

        return handle

    def _streaming(self, method: _methods.Method[Any, Any]) -> Any:
        async def handle(request: Message, context: Context) -> AsyncIterator[Message]:
            call, outcome = self._receive(method, request, context)
            try:
                await _wait(call)
                if isinstance(outcome, Fail):
                    await _abort(call, context, outcome)
                assert isinstance(outcome, Stream)  # as_outcome gives streams no Reply
                await context.send_initial_metadata(outcome.initial_metadata)
                for index, chunk in enumerate(outcome.chunks):
                    pause = outcome.first_delay if index == 0 else outcome.delay
                    if pause:
                        await asyncio.sleep(pause)
                    yield chunk
                    call.chunks_sent += 1
                if outcome.then is not None:
                    await _abort(call, context, outcome.then)
                if outcome.trailing_metadata:
                    context.set_trailing_metadata(outcome.trailing_metadata)
                call.end(grpc.StatusCode.OK)
            except (asyncio.CancelledError, GeneratorExit):
                # A cancel that lands while grpc.aio awaits a write cancels grpc's task,
                # not this generator, which only sees GeneratorExit when it is closed.
                _cut_short(call)
                raise

        return handle


def _serialize(message: Message | bytes) -> bytes:
    # A scripted bytes reply goes out as it is: a response the client may fail to decode.
    return message if isinstance(message, bytes) else message.SerializeToString()


HPACK_REUSE = 0.97
"""grpc may send, instead of a deadline, one it sent before on the connection up to 3 % longer.

grpc core's HPACK encoder (``TimeoutCompressorImpl``) reuses a previous ``grpc-timeout``
when the new one is within 3 % under it, to save header space: after a call with 10 s, a
call with 9.9 s arrives with 10.1 s.
"""

REUSE_WINDOW = 0.035
"""A deadline this close (relative, plus 50 ms of transit) to one received before on the same
connection may be that one, reused (`HPACK_REUSE`); any other was encoded for its call."""

DEADLINES_KEPT = 64
"""How many deadlines per connection `FakeServer` remembers (HPACK's table keeps fewer)."""

CLIENT_CLOCK_SLACK_S = 0.005
"""How far grpc's cached clock may make a client's wire deadline exceed what it was given."""


def asked_timeout(remaining: float | None, *, maybe_reused: bool) -> float | None:
    """What is left of the client's deadline as the fake reports it: never more than asked.

    `remaining` is what grpc's server makes of the ``grpc-timeout`` header, which
    overstates the client's timeout: it is rounded UP to three significant digits
    (``Timeout::FromMillis``: 10 s minus a moment arrives as 10.1 s), and, when it is
    `maybe_reused` (close to one received before on the connection), may be an earlier
    call's up to 3 % longer (`HPACK_REUSE`). Undoing that gives a lower bound: at most
    about 1 % under the client's timeout, 4 % when it may have been reused.
    """
    if remaining is None or remaining <= 0:
        return remaining
    unit = 0.001 if remaining < 1 else 10.0 ** (math.floor(math.log10(remaining)) - 2)
    factor = HPACK_REUSE if maybe_reused else 1.0
    return max(remaining * factor - unit - CLIENT_CLOCK_SLACK_S, 0.0)


DEADLINE_SLACK_S = 0.05
"""A call cut short this close to its deadline (at most half its time) counts as past it.

The deadline compared is the one the fake reports (`asked_timeout`: at most the client's).

The fake's clock for a deadline starts when its handler runs, and the client's starts before
it sent the call; the cancel the client sends at its deadline reaches the handler after a
transit of its own. On a loaded machine the two transits differ by milliseconds either way.
"""


def _cut_short(call: RecordedCall) -> None:
    """The call ended before the fake finished it: its deadline passed, or the client cancelled."""
    remaining = call.time_remaining
    elapsed = time.monotonic() - call.received_at
    late = remaining is not None and elapsed >= remaining - min(DEADLINE_SLACK_S, remaining / 2)
    call.end(
        grpc.StatusCode.DEADLINE_EXCEEDED if late else grpc.StatusCode.CANCELLED, cancelled=True
    )


async def _wait(call: RecordedCall) -> None:
    delay = call.route.delay if call.route is not None else 0.0
    if delay:
        await asyncio.sleep(delay)


async def _abort(call: RecordedCall, context: Context, fail: Fail) -> None:
    if fail.trailing_metadata:
        context.set_trailing_metadata(fail.trailing_metadata)
    call.end(fail.code)
    await context.abort(fail.code, fail.details)
