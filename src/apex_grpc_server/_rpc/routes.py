"""Which handler serves a call of apex.v1.ApexService, decided before its body is read.

grpc hands a handler its request already received and parsed. A caller without
a valid key could make the server buffer and parse a message of up to
``--max-message-bytes`` (16 MiB) before being told no. `ApexRoutes` is the
server's generic handler instead: it sees each call's method and metadata
first, and refuses an unauthenticated call (or any call, once the server is
shutting down) with a handler that never reads the request; the server then
holds no more of its body than HTTP/2 flow control lets in. An admitted call's
handler gets the raw bytes and parses them itself, so a malformed body is the
caller's INVALID_ARGUMENT, answered after the key was checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._rpc.call_scope import SERVICE, CallPolicy, refuse
from apex_grpc_server._status import RpcAbort


class _Route:
    """One RPC: its servicer method, and how to answer it admitted or refused."""

    __slots__ = ("behavior", "method", "serialize", "streaming")

    def __init__(self, method: str, behavior: Callable[..., Any], output: Any, streaming: bool):
        self.method = method
        self.behavior = behavior
        self.serialize = message_factory.GetMessageClass(output).SerializeToString
        self.streaming = streaming

    def admitted(self, user_id: str) -> grpc.RpcMethodHandler[Any, Any]:
        """The method's handler for `user_id`; it receives the request as bytes."""
        behavior = functools.partial(self.behavior, user_id=user_id)
        if self.streaming:
            return grpc.unary_stream_rpc_method_handler(
                behavior, response_serializer=self.serialize
            )
        return grpc.unary_unary_rpc_method_handler(behavior, response_serializer=self.serialize)

    def refused(self, policy: CallPolicy, abort: RpcAbort) -> grpc.RpcMethodHandler[Any, Any]:
        """A handler that ends the call with `abort` without reading the request.

        Request-streaming handlers are the ones grpc starts before any message
        arrives; the client's single request message is never asked for.
        """
        behavior = functools.partial(refuse, policy, self.method, abort)
        if self.streaming:
            return grpc.stream_stream_rpc_method_handler(
                behavior, response_serializer=self.serialize
            )
        return grpc.stream_unary_rpc_method_handler(behavior, response_serializer=self.serialize)


class ApexRoutes(grpc.GenericRpcHandler):
    """The server's handler of apex.v1.ApexService: admission first, then the servicer."""

    def __init__(self, servicer: Any, policy: CallPolicy) -> None:
        self.policy = policy
        service = pb.DESCRIPTOR.services_by_name[SERVICE.rsplit(".", 1)[-1]]
        self.routes = {
            f"/{SERVICE}/{m.name}": _Route(
                f"/{SERVICE}/{m.name}",
                getattr(servicer, m.name),
                m.output_type,
                m.server_streaming,
            )
            for m in service.methods
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Admit or refuse one call from its method and metadata (None: not this service)."""
        route = self.routes.get(handler_call_details.method)
        if route is None:
            return None
        try:
            user_id = self.policy.admit(handler_call_details.invocation_metadata)
        except RpcAbort as abort:
            return route.refused(self.policy, abort)
        return route.admitted(user_id)
