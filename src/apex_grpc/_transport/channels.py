"""Opening channels and their per-method callables, for both transports.

A channel is opened once per client (per event loop for aio); the 16
multi-callables are created right after it, so no call looks anything up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc
import grpc.aio
import grpc.experimental  # not imported by `import grpc`

from apex_grpc._errors import ClientClosedError, ForkError
from apex_grpc._methods import ALL_METHODS, Method
from apex_grpc._settings.client import ClientSettings
from apex_grpc._settings.configs import TLSConfig
from apex_grpc._transport.pool import CONNECTION_INDEX_ARG

Callables = dict[Method[Any, Any], Any]
SyncInterceptor = (
    grpc.UnaryUnaryClientInterceptor
    | grpc.UnaryStreamClientInterceptor
    | grpc.StreamUnaryClientInterceptor
    | grpc.StreamStreamClientInterceptor
)


class _ChannelLike(Protocol):
    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


GRPC_VERSION = tuple(int(part) for part in grpc.__version__.split(".")[:2] if part.isdigit())
"""The installed grpcio's (major, minor), e.g. (1, 85)."""

# grpcio before 1.80 cannot run a channel in a forked child of a process that
# already used grpc: calls hang until their deadline. Say so instead.
FORK_SAFE_GRPC = (1, 80)


def check_fork_support() -> None:
    """Raise ForkError in a forked child when this grpcio cannot serve it."""
    if GRPC_VERSION < FORK_SAFE_GRPC:
        raise ForkError(
            f"this process was forked after using gRPC, and grpcio {grpc.__version__} cannot "
            "open channels in a forked child; upgrade to grpcio>=1.80, or create the client "
            "after the fork (e.g. multiprocessing's 'spawn' start method)"
        )


def credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a secure client, None for plaintext."""
    if not settings.secure:
        return None
    tls = settings.tls or TLSConfig()
    return grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates,
        private_key=tls.private_key,
        certificate_chain=tls.certificate_chain,
    )


def make_callables(channel: _ChannelLike) -> Callables:
    """One multi-callable per RPC, bound to `channel`."""
    callables: Callables = {}
    for method in ALL_METHODS:
        factory: Callable[..., Any] = (
            channel.unary_stream if method.server_streaming else channel.unary_unary
        )
        callables[method] = factory(
            method.path,
            request_serializer=method.request_type.SerializeToString,
            response_deserializer=method.response_type.FromString,
            _registered_method=True,
        )
    return callables


def channel_options(settings: ClientSettings, index: int) -> list[tuple[str, str | int]]:
    """The channel arguments of connection `index` (n > 0 gets one more, to be its own)."""
    options = settings.grpc_options()
    if index:
        options.append((CONNECTION_INDEX_ARG, index))
    return options


def open_sync_channel(settings: ClientSettings, index: int = 0) -> grpc.Channel:
    """A grpcio channel for the sync client (connection `index` of its pool)."""
    options = channel_options(settings, index)
    if settings.single_threaded_streams:
        # Sync server-streams are much faster when read on the caller's thread.
        single_threaded = grpc.experimental.ChannelOptions.SingleThreadedUnaryStream
        options.append((single_threaded, 1))
    creds = credentials(settings)
    channel = (
        grpc.secure_channel(settings.target, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(settings.target, options=options)
    )
    if settings.interceptors:
        channel = grpc.intercept_channel(channel, *settings.interceptors)
    return channel


def open_aio_channel(settings: ClientSettings, index: int = 0) -> grpc.aio.Channel:
    """A grpc.aio channel for the async client; must be called in its event loop."""
    options = channel_options(settings, index)
    creds = credentials(settings)
    interceptors = list(settings.interceptors) or None
    if creds is not None:
        return grpc.aio.secure_channel(
            settings.target, creds, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(settings.target, options=options, interceptors=interceptors)


def closed_during_call() -> ClientClosedError:
    """The error of a call cut short by `close()` (grpc reports it as CANCELLED, a
    ValueError or, on grpc.aio, a cancelled await), the same on both transports."""
    return ClientClosedError("the client was closed during the call")
