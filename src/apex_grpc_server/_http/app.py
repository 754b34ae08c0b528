"""The HTTP face's ASGI application: every apex.v1 RPC over Connect and gRPC-Web.

connectrpc (the Connect project's Python runtime) speaks the protocols: the
Connect protocol (JSON and binary, unary and server streaming, HTTP/1.1 and
HTTP/2), gRPC-Web and gRPC. Behind it, each RPC is the very handler the gRPC
server routes to (`_rpc.routes.ApexRoutes`): the servicer's method wrapped by
`_rpc.call_scope`, given an `HttpCallContext` instead of grpc's context. So API keys,
validation, reply limits, idempotency, the queue and its pushback, the store,
engines, metrics, logging and drain are one code path for both faces.

As on the gRPC face, a call is admitted (its key checked, or turned away while
the server drains) from its headers alone, before its body is read: the
admission runs as a connectrpc metadata interceptor. The body reaches the
handler unparsed (binary) or as a `JsonBody`, and `_rpc.call_scope.parse` reads it inside
the call's scope, so a malformed body is the caller's INVALID_ARGUMENT, logged
and counted like any other outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import json_format
from google.protobuf.message import Message

from apex_grpc_server._http.context import HttpCallContext
from apex_grpc_server._rpc.call_scope import SERVICE, CallPolicy, JsonBody, parse, refuse
from apex_grpc_server._rpc.routes import ApexRoutes
from apex_grpc_server._status import RpcAbort

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_CALL: ContextVar[HttpCallContext] = ContextVar("apex_http_call")
"""The admitted call's context, from the admission interceptor to its endpoint (one task)."""


class BinaryCodec:
    """``application/proto``: the body passes to the handler as bytes, parsed there."""

    def name(self) -> str:
        """The codec's content-type suffix."""
        return "proto"

    def encode(self, message: Message) -> bytes:
        """A reply in protobuf's binary form."""
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> bytes:
        """The request's bytes, unparsed (parsed by `call_scope.parse`, as over gRPC)."""
        return bytes(data)


class JsonCodec:
    """``application/json``: protobuf's canonical JSON (lowerCamelCase field names)."""

    def name(self) -> str:
        """The codec's content-type suffix."""
        return "json"

    def encode(self, message: Message) -> bytes:
        """A reply in protobuf JSON, compact."""
        return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> JsonBody:
        """The request's JSON, unparsed (parsed by `call_scope.parse`, in the call)."""
        return JsonBody(data)


class Admission:
    """The connectrpc metadata interceptor that admits a call from its headers alone.

    Runs before connectrpc reads the body: a call without a valid key (or any
    call once the server drains) ends here, logged and counted by the same
    `_rpc.call_scope.refuse` as a refused gRPC call.
    """

    def __init__(self, policy: CallPolicy) -> None:
        self.policy = policy

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Admit the call or end it (raises ConnectError through `HttpCallContext.abort`).

        Health checks are open to all, as on the gRPC face.
        """
        call = HttpCallContext(ctx)
        if ctx.method.service_name != SERVICE:
            _CALL.set(call)
            return
        try:
            call.user_id = self.policy.admit(call.invocation_metadata())
        except RpcAbort as abort:
            method = f"/{SERVICE}/{ctx.method.name}"
            await refuse(self.policy, method, abort, None, call)
        _CALL.set(call)

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None, /
    ) -> None:
        """Nothing to undo."""


def _unary(behavior: Callable[..., Awaitable[Message]]) -> Callable[..., Awaitable[Message]]:
    async def call(body: bytes, ctx: RequestContext[Any, Any]) -> Message:
        context = _CALL.get()
        return await behavior(body, context, user_id=context.user_id)

    return call


def _stream(
    behavior: Callable[..., AsyncIterator[Message]],
) -> Callable[..., AsyncIterator[Message]]:
    def call(body: bytes, ctx: RequestContext[Any, Any]) -> AsyncIterator[Message]:
        context = _CALL.get()
        return behavior(body, context, user_id=context.user_id)

    return call


def _health_check(health: Any) -> Callable[..., Awaitable[Message]]:
    """grpc.health.v1.Health/Check on the server's health service (what load balancers poll)."""
    from grpc_health.v1 import health_pb2

    async def call(body: bytes, ctx: RequestContext[Any, Any]) -> Message:
        context = _CALL.get()
        try:
            request = parse(health_pb2.HealthCheckRequest, body)
        except RpcAbort as abort:
            await context.abort(abort.code, abort.details)
        reply: Message = await health.Check(request, context)
        return reply

    return call


def _info(path: str, streaming: bool) -> MethodInfo[Any, Any]:
    service, name = path.strip("/").split("/")
    return MethodInfo(
        name=name,
        service_name=service,
        input=bytes,
        output=Message,
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=StreamType.SERVER_STREAM if streaming else StreamType.UNARY,
    )


def endpoints(routes: ApexRoutes, health: Any = None) -> dict[str, Any]:
    """One connectrpc endpoint per RPC, each calling the route's servicer method.

    With the server's `health` service, its Check too (``/grpc.health.v1.Health/Check``).
    """
    result: dict[str, Any] = {}
    for path, route in routes.routes.items():
        if route.streaming:
            result[path] = Endpoint.server_stream(_info(path, True), _stream(route.behavior))
        else:
            result[path] = Endpoint.unary(_info(path, False), _unary(route.behavior))
    if health is not None:
        result[HEALTH_CHECK] = Endpoint.unary(_info(HEALTH_CHECK, False), _health_check(health))
    return result


class ApexConnectApp(ConnectASGIApplication[ApexRoutes]):
    """apex.v1.ApexService as an ASGI application (Connect, gRPC-Web, gRPC)."""

    def __init__(self, routes: ApexRoutes, health: Any, *, max_message_bytes: int) -> None:
        super().__init__(
            service=routes,
            endpoints=lambda routes: endpoints(routes, health),
            interceptors=(Admission(routes.policy),),
            read_max_bytes=max_message_bytes,
            codecs=(BinaryCodec(), JsonCodec()),
        )

    @property
    def path(self) -> str:
        """Where the service's methods are: ``/apex.v1.ApexService/<Method>``."""
        return f"/{SERVICE}"  # (and the health check's, /grpc.health.v1.Health/Check)
