"""Per-call plumbing shared by every ApexService method.

Request id and interop echo metadata, authentication, test knobs, status
mapping and the one log line per call live here, so handlers only see a
validated caller (``CallContext``) and raise ``RpcAbort`` to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._logging import log_call, logger
from apex_grpc_server._metrics.recorder import NO_METRICS, Metrics
from apex_grpc_server._rpc.api_keys import Authenticator
from apex_grpc_server._status import PUSHBACK, MetadataPairs, RpcAbort, retry_later
from apex_grpc_server._store.interface import ConnectionLost, StoreBusy, StoreUnavailable
from apex_grpc_server._wire.fault_injection import FailureCounter, Knobs, has_knobs, parse_knobs
from apex_grpc_server._wire.validation import CONTINUE_KEY


class Context(Protocol):
    """What the plumbing uses of a call's context: grpc.aio's, or the HTTP face's (`_http`)."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None:
        """The call's metadata (HTTP: its headers)."""

    async def send_initial_metadata(self, initial_metadata: MetadataPairs) -> None:
        """Send the response's headers now."""

    def set_trailing_metadata(self, trailing_metadata: MetadataPairs) -> None:
        """The metadata sent with the call's status."""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: MetadataPairs = ()
    ) -> NoReturn:
        """End the call with `code` (raises)."""

    def peer(self) -> str:
        """Who called, for the log line."""


Req = TypeVar("Req")
Resp = TypeVar("Resp")

REQUEST_ID = "x-request-id"
ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
SERVICE = "apex.v1.ApexService"
SHUTTING_DOWN = (
    "the server is shutting down and did not start this call; retry it on another replica"
)
HANDOVER_S = 0.25
"""Seconds a stopping server gives the streams it ends at the end of its grace period
(`CallPolicy.hand_over`) to send their UNAVAILABLE, before grpc cancels every call left."""
HANDED_OVER = (
    "the server is shutting down and its grace period ended before this stream did;"
    " a client resumes the answer on another replica"
)


@dataclass(slots=True)
class CallContext:
    """What a handler knows about its caller."""

    context: Context
    user_id: str
    request_id: str
    metadata: dict[str, str | bytes]
    knobs: Knobs | None
    trailing: list[tuple[str, str | bytes]] = field(default_factory=list)


class CallPolicy:
    """Authentication and knobs settings shared by all calls of one server."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        knobs_enabled: bool,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.authenticator = authenticator
        self.knobs_enabled = knobs_enabled
        self.metrics = metrics
        """Where each call's end is reported (`NO_METRICS` without --metrics-port)."""
        self.failures = FailureCounter()
        self.accepting = True
        """False while the server shuts down: new calls are answered UNAVAILABLE, unstarted."""
        self.turned_away = 0
        """Calls answered UNAVAILABLE because the server no longer accepted calls."""
        self.streams: set[asyncio.Task[Any]] = set()
        """The tasks of the streams in flight (what `hand_over` ends)."""
        self.handing_over = False

    def hand_over(self) -> int:
        """End every stream still in flight with UNAVAILABLE (HANDED_OVER); returns how many.

        What a stopping server does when its grace period ends: a stream's task is
        cancelled, and `_serve_stream` turns that cancel into the explicit status, which
        a client resumes on another replica (grpc's own end of a call at the same moment
        is an UNAVAILABLE with no reason given, or none at all for a call it never saw
        end).
        """
        self.handing_over = True
        streams = list(self.streams)
        for task in streams:
            task.cancel()
        if streams:
            logger.info("grace period over: %d streams handed over (UNAVAILABLE)", len(streams))
        return len(streams)

    def admit(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        """The caller's user id, from the call's metadata alone, before its body is read.

        Raises RpcAbort: UNAVAILABLE once the server is shutting down (the call is
        never started, so the client may retry it elsewhere), UNAUTHENTICATED
        without a valid key.
        """
        if not self.accepting:
            self.turned_away += 1
            raise RpcAbort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        authorization = None
        for key, value in metadata or ():
            if key == "authorization":
                authorization = value
                break
        return self.authenticator.authenticate(authorization)

    async def open(
        self, context: Context, request_id: str, user_id: str, *, streaming: bool
    ) -> CallContext:
        """Send initial metadata, read knobs and sleep if asked (the caller was admitted).

        Unary calls carry the request id in trailing metadata only: their headers
        reach the client together with the response anyway, and a separate
        initial-metadata send costs grpc.aio a round of its own (about 140 µs).
        Streams send it up front, so a client can read it before the first chunk.
        """
        metadata: dict[str, str | bytes] = dict(context.invocation_metadata() or ())
        trailing: list[tuple[str, str | bytes]] = [(REQUEST_ID, request_id)]
        initial: list[tuple[str, str | bytes]] = [(REQUEST_ID, request_id)]
        echo_initial = metadata.get(ECHO_INITIAL)
        if echo_initial is not None:
            initial.append((ECHO_INITIAL, echo_initial))
        echo_trailing = metadata.get(ECHO_TRAILING)
        if echo_trailing is not None:
            trailing.append((ECHO_TRAILING, echo_trailing))
        if streaming and metadata.get(CONTINUE_KEY) == "1":  # "I continue answers"
            initial.append((CONTINUE_KEY, "1"))
        if streaming or echo_initial is not None:
            await context.send_initial_metadata(initial)
        call = CallContext(context, user_id, request_id, metadata, None, trailing)
        if self.knobs_enabled and has_knobs(metadata):
            call.knobs = parse_knobs(metadata, self.failures)
            if call.knobs.sleep_s:
                await asyncio.sleep(call.knobs.sleep_s)
        return call


class HasPolicy(Protocol):
    """A servicer whose methods use the per-call plumbing."""

    policy: CallPolicy


S = TypeVar("S", bound=HasPolicy)


def _failure_abort(call: CallContext) -> RpcAbort | None:
    failure = call.knobs.failure if call.knobs else None
    if failure is None:
        return None
    extra: MetadataPairs = ((PUSHBACK, failure.pushback_ms),) if failure.pushback_ms else ()
    return RpcAbort(failure.code, failure.message, extra)


async def _abort(
    context: Context, call: CallContext | None, request_id: str, abort: RpcAbort
) -> None:
    replaced = {key for key, _ in abort.trailing_metadata}  # the abort's values win
    trailing: list[tuple[str, str | bytes]] = [
        pair
        for pair in (call.trailing if call else [(REQUEST_ID, request_id)])
        if pair[0] not in replaced
    ]
    trailing.extend(abort.trailing_metadata)
    await context.abort(abort.code, abort.details, trailing_metadata=tuple(trailing))


class _CallScope:
    """One call's plumbing around its handler: open it, map how it ends, log one line.

    ``async with _CallScope(...) as call:`` opens the call (initial metadata,
    authentication, knobs); leaving the block maps the outcome to a status:
    RpcAbort to its code, cancellation to CANCELLED, a database that cannot
    be reached (StoreUnavailable) to UNAVAILABLE and a busy one (StoreBusy) to
    RESOURCE_EXHAUSTED with a retry hint, both retried by clients; anything
    unexpected to INTERNAL (logged with its traceback); then it logs the call
    and reports it to the server's metrics.
    """

    __slots__ = ("call", "code", "context", "method", "peer", "policy", "request_id", "started")

    def __init__(self, policy: CallPolicy, context: Context, method: str) -> None:
        self.started = time.perf_counter()
        # Read now: grpc.aio crashes (SIGSEGV) on context.peer() after a cancelled call.
        self.peer = context.peer()
        self.policy = policy
        self.context = context
        self.method = method
        self.request_id = uuid.uuid4().hex
        self.code = "OK"
        self.call: CallContext | None = None
        policy.metrics.call_started()

    async def open(self, user_id: str, *, streaming: bool) -> CallContext:
        """Open the admitted call of `user_id` (initial metadata, knobs)."""
        self.call = await self.policy.open(
            self.context, self.request_id, user_id, streaming=streaming
        )
        return self.call

    async def __aenter__(self) -> _CallScope:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        try:
            if error is None:
                if self.call is not None:
                    self.context.set_trailing_metadata(tuple(self.call.trailing))
            elif isinstance(error, RpcAbort):
                self.code = error.code.name
                await _abort(self.context, self.call, self.request_id, error)
            elif isinstance(error, asyncio.CancelledError | GeneratorExit):
                self.code = "CANCELLED"
            elif isinstance(error, grpc.aio.AbortError):  # pragma: no cover - RpcAbort instead
                self.code = "ABORTED_BY_HANDLER"
            elif isinstance(error, StoreUnavailable):
                abort = _store_abort(error)
                self.code = abort.code.name
                logger.warning("%s: %s (request_id=%s)", self.method, error, self.request_id)
                await _abort(self.context, self.call, self.request_id, abort)
            elif isinstance(error, Exception):
                self.code = "INTERNAL"
                await _abort(self.context, self.call, self.request_id, self._internal(error))
        finally:
            duration_s = time.perf_counter() - self.started
            self.policy.metrics.call_ended(self.method, self.code, duration_s)
            log_call(self.method, self.code, duration_s, self.peer, self.request_id)

    def _internal(self, error: BaseException) -> RpcAbort:
        logger.error(
            "%s failed unexpectedly (request_id=%s)",
            self.method,
            self.request_id,
            exc_info=error,
        )
        return RpcAbort(
            grpc.StatusCode.INTERNAL, f"internal server error (request id {self.request_id})"
        )


def _store_abort(error: StoreUnavailable) -> RpcAbort:
    """The retryable status of a database that is busy or cannot be reached."""
    if isinstance(error, StoreBusy):
        return retry_later(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), error.retry_after_ms)
    return RpcAbort(grpc.StatusCode.UNAVAILABLE, f"{error}; retry the call")


MAX_DECODE_ERROR = 200
"""Characters of protobuf's own parse error kept in an INVALID_ARGUMENT message."""


def request_class(method_name: str) -> type[Message]:
    """The request message class of an ApexService method, from the proto."""
    method = pb.DESCRIPTOR.services_by_name["ApexService"].methods_by_name[method_name]
    return message_factory.GetMessageClass(method.input_type)


class JsonBody(bytes):
    """A request body in protobuf's JSON form (the HTTP face's Connect JSON), not its binary."""

    __slots__ = ()


def parse(request_type: type[Req], raw: bytes) -> Req:
    """The request in `raw`; a body that is not one is the caller's INVALID_ARGUMENT.

    A `JsonBody` is read as protobuf JSON, refusing fields the message does not
    have (a misspelt field is the caller's mistake, not something to ignore).
    """
    try:
        if isinstance(raw, JsonBody):
            return json_format.Parse(raw, request_type())  # type: ignore[type-var]
        return request_type.FromString(raw)  # type: ignore[attr-defined,no-any-return]
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as error:
        reason = str(error)[:MAX_DECODE_ERROR] or "malformed protobuf"
        name = request_type.DESCRIPTOR.full_name  # type: ignore[attr-defined]
        raise RpcAbort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request: the body is not a valid {name} message ({reason})",
        ) from None


async def refuse(
    policy: CallPolicy, method: str, abort: RpcAbort, requests: Any, context: Context
) -> None:
    """End a call that was not admitted with `abort`, never reading its request (logged)."""
    async with _CallScope(policy, context, method):
        raise abort


def unary(
    fn: Callable[[S, Req, CallContext], Awaitable[Resp]],
) -> Callable[..., Awaitable[Resp]]:
    """Wrap a unary handler ``fn(self, request, call)`` with the per-call plumbing.

    The wrapper takes the admitted caller's `user_id` and the request's bytes
    (see `_routes`), and parses them once the call is open (`_serve_unary`).
    """
    method = f"/{SERVICE}/{fn.__name__}"
    request_type = request_class(fn.__name__)

    @functools.wraps(fn)
    async def handler(self: S, raw: bytes, context: Context, *, user_id: str) -> Resp:
        return await _serve_unary(self, fn, method, request_type, raw, context, user_id)

    return handler


# The calls' plumbing lives in module-level functions rather than in the wrappers above,
# which are built once, at import: `make mutate` can then change it per test run.
async def _serve_unary(
    servicer: S,
    fn: Callable[[S, Any, CallContext], Awaitable[Resp]],
    method: str,
    request_type: type[Message],
    raw: bytes,
    context: Context,
    user_id: str,
) -> Resp:
    """One unary call of `fn`: open it, parse its request, fail it if a knob says so, run it.

    A call whose database connection broke under it (ConnectionLost) is run
    once more, on a fresh connection: a read is safe to repeat, and a write
    raises it only when its idempotency key makes the repeat replay the first
    attempt if that one committed (`_idempotency.once`).
    """
    async with _CallScope(servicer.policy, context, method) as scope:
        call = await scope.open(user_id, streaming=False)
        request = parse(request_type, raw)
        injected = _failure_abort(call)
        if injected is not None:
            raise injected
        try:
            return await fn(servicer, request, call)
        except ConnectionLost as lost:
            logger.info("%s: %s; running it again (request_id=%s)", method, lost, scope.request_id)
        return await fn(servicer, request, call)


def server_stream(
    fn: Callable[[S, Req, CallContext], AsyncGenerator[Resp, None]],
) -> Callable[..., AsyncGenerator[Resp, None]]:
    """Wrap a server-streaming handler (as `unary`); x-echo-fail-after counts the messages sent."""
    method = f"/{SERVICE}/{fn.__name__}"
    request_type = request_class(fn.__name__)

    @functools.wraps(fn)
    async def handler(
        self: S, raw: bytes, context: Context, *, user_id: str
    ) -> AsyncGenerator[Resp, None]:
        stream = _serve_stream(self, fn, method, request_type, raw, context, user_id)
        async with contextlib.aclosing(stream) as messages:
            async for message in messages:
                yield message

    return handler


async def _serve_stream(
    servicer: S,
    fn: Callable[[S, Any, CallContext], AsyncGenerator[Resp, None]],
    method: str,
    request_type: type[Message],
    raw: bytes,
    context: Context,
    user_id: str,
) -> AsyncGenerator[Resp, None]:
    """One server-streaming call of `fn` (as `_serve_unary`), its messages passed on.

    Its task is in ``policy.streams`` while it runs, for `CallPolicy.hand_over`.
    """
    policy = servicer.policy
    task = asyncio.current_task()
    if task is not None:
        policy.streams.add(task)
    try:
        async with _CallScope(policy, context, method) as scope:
            try:
                call = await scope.open(user_id, streaming=True)
                request = parse(request_type, raw)
                injected = _failure_abort(call)
                fail_after = call.knobs.failure.after if call.knobs and call.knobs.failure else 0
                if injected is not None and fail_after == 0:
                    raise injected
                sent = 0
                async with contextlib.aclosing(fn(servicer, request, call)) as messages:
                    async for message in messages:
                        yield message
                        sent += 1
                        if injected is not None and sent >= fail_after:
                            raise injected
                if injected is not None:
                    raise injected
            except asyncio.CancelledError:
                if not policy.handing_over:
                    raise
                raise RpcAbort(grpc.StatusCode.UNAVAILABLE, HANDED_OVER) from None
    finally:
        if task is not None:
            policy.streams.discard(task)
