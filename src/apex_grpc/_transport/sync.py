"""The grpcio transport of ApexClient: one channel, calls with retries and deadlines."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import grpc

from apex_grpc._errors import ClientClosedError
from apex_grpc._methods import CHAT_COMPLETION_STREAM, Method, Req, Resp
from apex_grpc._requests import Prepared
from apex_grpc._retry import UnaryAttempts
from apex_grpc._settings.client import ClientSettings
from apex_grpc._streaming.state import StreamState, opener
from apex_grpc._streaming.sync import ChatCompletionStream
from apex_grpc._streaming.watchdog import Watchdog
from apex_grpc._transport.channels import (
    Callables,
    check_fork_support,
    make_callables,
    open_sync_channel,
)


class SyncTransport:
    """Owns the client's grpc channel (created once; again only in a forked child)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self.watchdog = Watchdog()
        self._channel: grpc.Channel
        self._callables: Callables
        self._pid = -1
        self._open()

    def _open(self) -> None:
        # After a fork the parent's channel is unusable in the child; it is
        # left untouched (closing it could disturb the parent) and replaced.
        self._channel = open_sync_channel(self._settings)
        self._callables = make_callables(self._channel)
        self._pid = os.getpid()

    def callable_for(self, method: Method[Req, Resp]) -> Any:
        """The channel's multi-callable for `method`."""
        if self._pid != os.getpid():
            check_fork_support()
            with self._lock:
                if self._pid != os.getpid():
                    self._open()
        if self._closed:
            raise ClientClosedError("the client is closed")
        return self._callables[method]

    @property
    def channel(self) -> grpc.Channel:
        """The underlying grpc channel (for connectivity checks and advanced use)."""
        self.callable_for(CHAT_COMPLETION_STREAM)
        return self._channel

    def unary(self, prepared: Prepared[Req, Resp]) -> Resp:
        """Run a unary call; retries and the overall deadline follow its settings."""
        invoke = self.callable_for(prepared.method)
        request = prepared.request
        state = UnaryAttempts(prepared)
        while True:
            try:
                if not state.detailed:
                    return invoke(request, **state.attempt())  # type: ignore[no-any-return]
                response, rpc = invoke.with_call(request, **state.attempt())
                state.succeeded(
                    rpc.initial_metadata(), rpc.trailing_metadata(), rpc.code(), rpc.details()
                )
                return response  # type: ignore[no-any-return]
            except grpc.RpcError as error:
                time.sleep(state.failed(error))
            except ValueError as error:
                if self._closed:
                    raise ClientClosedError("the client was closed during the call") from error
                raise

    def stream(self, prepared: Prepared[Any, Any]) -> ChatCompletionStream:
        """Start a ChatCompletionStream call."""
        invoke = self.callable_for(prepared.method)
        return ChatCompletionStream(opener(invoke, prepared), StreamState(prepared), self.watchdog)

    def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.watchdog.stop()
        if self._pid == os.getpid():
            self._channel.close()
