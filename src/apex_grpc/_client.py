"""ApexClient (grpcio) and the constructor it shares with AsyncApexClient (grpc.aio).

Both share one constructor (`_ClientBase`), one configuration, one request
builder and one error table; they differ in their transport and in
``await``. Each client opens one channel (per event loop for aio) and reuses
it for every call until `close()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import grpc
import grpc.aio

from apex_grpc._call import NO_OPTIONS, Call, CallPlan, plan_call
from apex_grpc._channel import SyncInterceptor
from apex_grpc._chat_params import PreparedChat, prepare_chat
from apex_grpc._config import (
    CallDefaults,
    ClientConfig,
    KeepAliveConfig,
    LoadBalancing,
    MetadataArg,
    Secret,
    TLSConfig,
    check_max_retries,
    check_timeout,
    normalize_metadata,
    resolve_client_config,
)
from apex_grpc._errors import UnavailableError, ValidationError
from apex_grpc._logging import configure_from_env, warn_if_grpc_traces_headers
from apex_grpc._methods import CHAT_COMPLETION, Resp
from apex_grpc._resources import Chat, Chats, Completions, DeepResearch, WebSearch
from apex_grpc._retry import RetryPolicy
from apex_grpc._stream import ChatCompletionStream
from apex_grpc._sync_transport import SyncTransport
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()
"""Marks an argument the caller did not pass (so None can mean "no timeout")."""


class ClientOptions(TypedDict, total=False):
    """What `with_options` can change; see the client constructor for meanings.

    ``api_key`` gives a client that calls with another key over the same
    channel (per-caller credentials in a multi-tenant service).
    """

    api_key: str
    timeout: float | None
    max_retries: int
    retry: RetryPolicy
    metadata: MetadataArg
    compress: bool
    wait_for_ready: bool
    stream_first_chunk_timeout: float | None
    stream_idle_timeout: float | None


class _ClientBase:
    """The constructor and configuration shared by ApexClient and AsyncApexClient."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        secure: bool | None = None,
        timeout: float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
        compress: bool = False,
        app_name: str | None = None,
        retry: RetryPolicy | None = None,
        metadata: MetadataArg = None,
        tls: TLSConfig | None = None,
        keepalive: KeepAliveConfig | None = None,
        max_message_bytes: int | None = None,
        load_balancing: LoadBalancing | None = None,
        channel_options: Sequence[tuple[str, str | int]] | None = None,
        interceptors: Sequence[SyncInterceptor | grpc.aio.ClientInterceptor] = (),
        allow_insecure_key: bool | None = None,
        wait_for_ready: bool = False,
        stream_first_chunk_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        single_threaded_streams: bool = True,
    ) -> None:
        """Create a client; no connection is made until the first call.

        api_key: your Apex API key; default: $APEX_API_KEY, then
            $MACROCOSMOS_API_KEY. A missing key raises MissingAPIKeyError.
        base_url: ``host``, ``host:port``, ``https://host`` or any gRPC target
            (``dns:///host:port``, ``ipv4:a:p,b:p``, ``unix:/path``); default:
            $MACROCOSMOS_BASE_URL, then the public Apex endpoint. A bare host
            gets port 443.
        secure: TLS (default, also when $MACROCOSMOS_USE_HTTPS is unset) or
            plaintext. The key is never sent in plaintext to a host that is
            not loopback unless `allow_insecure_key=True`.
        timeout: overall deadline per call in seconds, across retries (None:
            no deadline). Default 600; web searches default to
            max_response_time + 10.
        max_retries: retries of UNAVAILABLE (and of RESOURCE_EXHAUSTED with a
            server pushback), with jittered exponential backoff. Default 2
            (or the count in `retry`).
        compress: gzip-compress requests.
        app_name: sent as ``x-source``.
        retry: a full RetryPolicy (`max_retries`, when given, overrides its count).
        metadata: extra request metadata for every call.
        tls: root certificates, client certificate, server name override.
        keepalive: HTTP/2 keepalive settings.
        max_message_bytes: largest message sent or received (default 64 MiB).
        load_balancing: "pick_first" or "round_robin" across resolved addresses.
        channel_options: raw grpc channel arguments, appended last.
        interceptors: grpc client interceptors (aio ones for AsyncApexClient).
        wait_for_ready: queue calls while connecting instead of failing fast.
        stream_first_chunk_timeout / stream_idle_timeout: default limits on
            how long a stream may wait for its first chunk / between chunks.
        single_threaded_streams: read sync streams on the caller's thread
            (grpcio's faster SingleThreadedUnaryStream mode).
        """
        configure_from_env()
        warn_if_grpc_traces_headers()
        self._config: ClientConfig = resolve_client_config(
            api_key=api_key,
            base_url=base_url,
            secure=secure,
            timeout=None if timeout is NOT_GIVEN else timeout,
            timeout_given=timeout is not NOT_GIVEN,
            max_retries=None if max_retries is NOT_GIVEN else max_retries,
            compress=compress,
            app_name=app_name,
            retry=retry,
            metadata=metadata,
            tls=tls,
            keepalive=keepalive,
            max_message_bytes=max_message_bytes,
            load_balancing=load_balancing,
            channel_options=channel_options,
            allow_insecure_key=allow_insecure_key,
            wait_for_ready=wait_for_ready,
            stream_first_chunk_timeout=stream_first_chunk_timeout,
            stream_idle_timeout=stream_idle_timeout,
            single_threaded_streams=single_threaded_streams,
        )
        self._owns_transport = True
        self._set_defaults(self._config.defaults)
        self._transport = self._make_transport(interceptors)
        self._make_resources()

    def _make_transport(self, interceptors: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _make_resources(self) -> None:
        raise NotImplementedError

    def _set_defaults(self, defaults: CallDefaults) -> None:
        self._defaults = defaults
        self._static_metadata = self._config.identity_metadata() + defaults.metadata
        self._default_plan = plan_call(NO_OPTIONS, defaults, self._static_metadata)

    def _plan(self, call: Call[Any, Any]) -> CallPlan:
        if call.options is NO_OPTIONS and call.default_timeout is None:
            return self._default_plan
        return plan_call(call.options, self._defaults, self._static_metadata, call.default_timeout)

    def _prepare_chat(
        self, stream: bool, params: Mapping[str, object]
    ) -> tuple[PreparedChat, CallPlan]:
        defaults = self._defaults
        prepared = prepare_chat(
            params,
            stream=stream,
            client_timeout=None if defaults.timeout_is_default else defaults.timeout,
        )
        return prepared, self._plan(Call(CHAT_COMPLETION, prepared.request, prepared.options))

    def _stream_limits(self, prepared: PreparedChat) -> tuple[float | None, float | None]:
        limits, defaults = prepared.stream_timeouts, self._defaults
        first = (
            limits.first_chunk
            if "first_chunk_timeout" in limits.given
            else defaults.stream_first_chunk_timeout
        )
        idle = limits.idle if "idle_timeout" in limits.given else defaults.stream_idle_timeout
        return first, idle

    def with_options(self, **options: Unpack[ClientOptions]) -> Self:
        """A client sharing this one's channel, with other call defaults.

        Closing the derived client does not close the shared channel; close
        the original.
        """
        changes: dict[str, Any] = {}
        config = self._config
        for name, value in options.items():
            if name == "api_key":
                if not isinstance(value, str) or not value.strip():
                    raise ValidationError("api_key", "must be a non-empty string")
                config = config._replace(api_key=Secret(value.strip()))
            elif name == "timeout":
                changes["timeout"] = check_timeout(value, "timeout")  # type: ignore[arg-type]
                changes["timeout_is_default"] = False
            elif name == "max_retries":
                retries = check_max_retries(value, "max_retries")  # type: ignore[arg-type]
                changes["retry"] = changes.get("retry", self._defaults.retry).with_max_retries(
                    retries
                )
            elif name == "retry":
                if not isinstance(value, RetryPolicy):
                    raise ValidationError("retry", "must be a RetryPolicy")
                changes["retry"] = value
            elif name == "metadata":
                extra = dict(self._defaults.metadata)
                extra.update(normalize_metadata(value, "metadata"))  # type: ignore[arg-type]
                changes["metadata"] = tuple(extra.items())
            elif name in ("compress", "wait_for_ready"):
                if not isinstance(value, bool):
                    raise ValidationError(name, f"must be True or False, got {value!r}")
                changes["compression" if name == "compress" else name] = value
            elif name in ("stream_first_chunk_timeout", "stream_idle_timeout"):
                changes[name] = check_timeout(value, name)  # type: ignore[arg-type]
            else:
                raise ValidationError(name, "unexpected keyword argument")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._owns_transport = False
        clone._config = config
        clone._set_defaults(self._defaults._replace(**changes))
        clone._make_resources()
        return clone

    @property
    def base_url(self) -> str:
        """The endpoint as given (argument or environment)."""
        return self._config.base_url

    @property
    def target(self) -> str:
        """The gRPC target the channel dials."""
        return self._config.target

    @property
    def secure(self) -> bool:
        """Whether the channel uses TLS."""
        return self._config.secure

    @property
    def timeout(self) -> float | None:
        """The default overall deadline of a call, in seconds."""
        return self._defaults.timeout

    @property
    def max_retries(self) -> int:
        """How many times a failed call may be retried."""
        return self._defaults.retry.max_retries

    @property
    def app_name(self) -> str:
        """Sent as ``x-source`` on every call."""
        return self._config.app_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, target={self.target!r}, "
            f"secure={self.secure}, timeout={self.timeout}, max_retries={self.max_retries}, "
            "api_key='***')"
        )


class ApexClient(_ClientBase):
    """The synchronous Apex client (grpcio): thread-safe, one channel for all calls.

    ``client.chat.completions.create(...)``, ``client.web_search.search(...)``,
    ``client.deep_research``, ``client.chats``. Use it as a context manager or
    call `close()`.
    """

    _transport: SyncTransport

    def _make_transport(self, interceptors: Sequence[Any]) -> SyncTransport:
        for interceptor in interceptors:
            if isinstance(interceptor, grpc.aio.ClientInterceptor):
                raise ValidationError(
                    "interceptors", "grpc.aio interceptors belong to AsyncApexClient"
                )
        return SyncTransport(self._config, interceptors)

    def _make_resources(self) -> None:
        self.chat = Chat(self)
        self.completions: Completions = self.chat.completions
        self.web_search = WebSearch(self)
        self.deep_research = DeepResearch(self)
        self.chats = Chats(self)

    def _run_unary(self, call: Call[Any, Resp]) -> Resp:
        return self._transport.unary(call, self._plan(call))

    def _create_chat(
        self, stream: bool, params: Mapping[str, object]
    ) -> pb.ChatCompletionResponse | ChatCompletionStream:
        prepared, plan = self._prepare_chat(stream, params)
        if stream:
            return self._transport.stream(prepared, plan, *self._stream_limits(prepared))
        return self._transport.unary(Call(CHAT_COMPLETION, prepared.request), plan)

    @property
    def channel(self) -> grpc.Channel:
        """The grpc channel this client uses."""
        return self._transport.channel

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Block until the channel is connected; raises UnavailableError on timeout."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise UnavailableError(
                f"could not connect to {self.target} within {timeout}s"
            ) from None

    def close(self) -> None:
        """Close the channel (no-op for clients made by `with_options`)."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
