"""The server's service layer served by grpc_testing: no sockets, no grpc core.

``grpc_testing.server_from_dictionary`` runs sync servicers only: it calls a
method with the request and its own ``grpc.ServicerContext`` on a thread and
has no support for grpc.aio handlers (grpc/grpc#24942). Ours are async and
reached through `ApexRoutes`, which admits a call from its metadata before
the handler gets the request's bytes. So the servicer grpc_testing is given
here is an adapter, one sync method per RPC, that does what the grpc.aio
server does with our generic handler:

- asks the real `ApexRoutes.service()` for the call's handler (admission, or
  a refusal that never reads the request, stays in that one place);
- runs the handler's coroutine, or pulls its async generator one message at
  a time, on one background event loop (`asyncio.run_coroutine_threadsafe`);
- gives it `AioContext`, the grpc.aio ServicerContext calls our code makes,
  on top of grpc_testing's context.

Everything else is the real server's: `ApexServer.open_service()` builds the
store (SQLite in the test's folder), the echo engine, the search index, the
policy and the servicer exactly as ``serve`` does; only the grpc server and
its port are missing. What this does not test: HTTP/2, flow control, message
size limits, deadlines propagated by grpc, cancellation by the peer (the
tests through real servers cover those).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc_testing
from google.protobuf.message import Message

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server import ServerConfig
from apex_grpc_server._rpc.routes import ApexRoutes
from apex_grpc_server._rpc.servicer import ApexServicer
from apex_grpc_server._runtime.server import ApexServer
from apex_grpc_server._store import Storage

T = TypeVar("T")
Metadata = Sequence[tuple[str, str | bytes]]

SERVICE = pb.DESCRIPTOR.services_by_name["ApexService"]
ADDED_BY_GRPC_TESTING = "grpc.metadata_added_by_runtime"
"""The entry grpc_testing adds to every metadata it hands on ("gRPC is allowed to add...")."""
PEER = "socketless"
OTHER_API_KEY = "apex-grpc-other-test-key-9876543210"
"""A second key the socketless_server fixture's servers accept: another user."""


class EventLoopThread:
    """One asyncio loop on a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        """The result of `awaitable`, run on the loop (its exception raised here)."""

        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class AioContext:
    """The grpc.aio ServicerContext calls the service layer makes, on grpc_testing's context.

    ``abort`` ends the call as grpc.aio's does: the status and trailing
    metadata are set and AbortError is raised through the handler.
    """

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def invocation_metadata(self) -> Metadata:
        """The call's request metadata."""
        return tuple(self._context.invocation_metadata() or ())

    def peer(self) -> str:
        """grpc_testing has no peer; a fixed name stands in."""
        return PEER

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        return self._context.time_remaining()

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        """Send the response headers now."""
        self._context.send_initial_metadata(metadata)

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        """The trailers the call ends with when it ends OK."""
        self._context.set_trailing_metadata(metadata)

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> None:
        """End the call with `code`, `details` and `trailing_metadata`."""
        self._context.set_trailing_metadata(trailing_metadata)
        self._context.set_code(code)
        self._context.set_details(details)
        raise grpc.aio.AbortError()


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):  # type: ignore[misc]
    method: str
    invocation_metadata: Metadata


class _Adapter:
    """What grpc_testing calls: one sync method per RPC, each run through `ApexRoutes`."""

    def __init__(self, routes: ApexRoutes, loop: EventLoopThread) -> None:
        self._routes = routes
        self._loop = loop
        for method in SERVICE.methods:
            path = f"/{SERVICE.full_name}/{method.name}"
            behavior = self._stream if method.server_streaming else self._unary
            setattr(self, method.name, _bound(behavior, path))

    def _handler(
        self, path: str, context: grpc.ServicerContext
    ) -> tuple[grpc.RpcMethodHandler[Any, Any], AioContext]:
        aio = AioContext(context)
        handler = self._routes.service(_CallDetails(path, aio.invocation_metadata()))
        assert handler is not None, path
        return handler, aio

    def _unary(self, path: str, request: Message | bytes, context: grpc.ServicerContext) -> Any:
        handler, aio = self._handler(path, context)
        if handler.unary_unary is not None:
            answer = handler.unary_unary(_raw(request), aio)
        else:  # refused before its request is read: a request stream that never yields
            answer = handler.stream_unary(iter(()), aio)
        try:
            return self._loop.run(answer)
        except grpc.aio.AbortError:
            return None  # the status is set on the context

    def _stream(
        self, path: str, request: Message | bytes, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        handler, aio = self._handler(path, context)
        try:
            if handler.unary_stream is None:  # refused: a coroutine that only aborts
                self._loop.run(handler.stream_stream(iter(()), aio))
                return
            messages = handler.unary_stream(_raw(request), aio)
            try:
                while True:
                    try:
                        message = self._loop.run(messages.__anext__())
                    except StopAsyncIteration:
                        return
                    yield message
            finally:
                self._loop.run(messages.aclose())
        except grpc.aio.AbortError:
            return


def _bound(behavior: Callable[..., T], path: str) -> Callable[..., T]:
    def method(request: Message | bytes, context: grpc.ServicerContext) -> T:
        return behavior(path, request, context)

    return method


def _raw(request: Message | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def _without_runtime_entry(metadata: Metadata | None) -> dict[str, str | bytes]:
    return {key: value for key, value in metadata or () if key != ADDED_BY_GRPC_TESTING}


def _keys(metadata: Metadata | None) -> list[str]:
    return [key for key, _ in metadata or () if key != ADDED_BY_GRPC_TESTING]


@dataclass
class Outcome:
    """How one call ended, as its client would see it."""

    code: grpc.StatusCode
    details: str
    initial: dict[str, str | bytes]
    trailing: dict[str, str | bytes]
    responses: list[Any] = field(default_factory=list)
    trailing_keys: list[str] = field(default_factory=list)
    """The trailers' keys in the order sent, repeats kept (`trailing` keeps one of each)."""

    @property
    def response(self) -> Any:
        """A unary call's one response (asserting the call had exactly one)."""
        assert len(self.responses) == 1, (self.code, self.details, self.responses)
        return self.responses[0]

    def ok(self) -> Any:
        """The response of a call that must have succeeded."""
        assert self.code is grpc.StatusCode.OK, (self.code, self.details)
        return self.response


class SocketlessServer:
    """The real service layer of a server with `config`, called through grpc_testing.

    ``unary(name, request)`` and ``stream(name, request)`` make a call with
    the ``authorization`` of `api_key` (pass ``metadata`` to send other
    metadata instead); ``run(coroutine)`` runs anything on the service's loop
    (e.g. the store's methods). A request may be raw bytes (a malformed body).
    """

    def __init__(self, config: ServerConfig, api_key: str) -> None:
        config.validate()
        self.authorization: Metadata = (("authorization", f"Bearer {api_key}"),)
        self._loop = EventLoopThread()
        self._apex = ApexServer(config)
        try:
            routes = self._loop.run(self._apex.open_service())
        except BaseException:
            self.close()
            raise
        self.routes = routes
        """The real ApexRoutes (its `policy` is the server's CallPolicy)."""
        self._server = grpc_testing.server_from_dictionary(
            {SERVICE: _Adapter(routes, self._loop)}, grpc_testing.strict_real_time()
        )

    @property
    def store(self) -> Storage:
        """The server's store, to set up or read back what a call needs."""
        store = self._apex.store
        assert store is not None
        return store

    @property
    def servicer(self) -> ApexServicer:
        """The real ApexServicer behind the routes (its engine, index and research runner)."""
        behavior = self.routes.routes[f"/{SERVICE.full_name}/ChatCompletion"].behavior
        servicer: ApexServicer = behavior.__self__  # type: ignore[attr-defined]
        return servicer

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run `awaitable` on the service's event loop."""
        return self._loop.run(awaitable)

    def unary(
        self, name: str, request: Message | bytes, metadata: Metadata | None = None
    ) -> Outcome:
        """Call the unary RPC `name` and wait for its end."""
        rpc = self._server.invoke_unary_unary(
            SERVICE.methods_by_name[name], self._metadata(metadata), request, None
        )
        response, trailing, code, details = rpc.termination()
        return Outcome(
            code,
            details,
            _without_runtime_entry(rpc.initial_metadata()),
            _without_runtime_entry(trailing),
            [] if response is None else [response],
            _keys(trailing),
        )

    def stream(
        self, name: str, request: Message | bytes, metadata: Metadata | None = None
    ) -> Outcome:
        """Call the server-streaming RPC `name`; every message it sent, and its end."""
        rpc = self._server.invoke_unary_stream(
            SERVICE.methods_by_name[name], self._metadata(metadata), request, None
        )
        trailing, code, details = rpc.termination()
        responses = []
        while True:
            try:
                responses.append(rpc.take_response())
            except ValueError:  # grpc_testing's "No more responses!" once the call ended
                break
        return Outcome(
            code,
            details,
            _without_runtime_entry(rpc.initial_metadata()),
            _without_runtime_entry(trailing),
            responses,
            _keys(trailing),
        )

    def _metadata(self, metadata: Metadata | None) -> Metadata:
        return self.authorization if metadata is None else tuple(metadata)

    def close(self) -> None:
        """Close the store, engine and index, then the loop."""
        try:
            self._loop.run(self._apex.stop(0, drain_delay=0))
        finally:
            self._loop.close()
