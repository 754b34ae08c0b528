"""ApexClient (grpcio) and the constructor it shares with AsyncApexClient (grpc.aio).

Both clients are built the same way: the constructor's arguments become one
`ClientSettings` (checked once), the transport opens the channel(s), and the
resources (``chat.completions``, ``web_search``, ``deep_research``,
``chats``) read the settings and run calls on the transport. They differ in
their transport and in ``await``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypedDict, TypeVar, Unpack

import grpc
import grpc.aio

from apex_grpc._constructor import ClientConstructor
from apex_grpc._errors import UnavailableError, ValidationError
from apex_grpc._logging import configure_from_env, warn_if_grpc_traces_headers
from apex_grpc._resources.chat import Chat, Completions
from apex_grpc._resources.chats import Chats
from apex_grpc._resources.deep_research import DeepResearch
from apex_grpc._resources.web_search import WebSearch
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings.checks import MetadataArg
from apex_grpc._settings.client import ClientSettings
from apex_grpc._transport.sync import SyncTransport

T = TypeVar("T")


class ClientDefaults(TypedDict, total=False):
    """The call defaults `with_options` can change (see ClientSettings for each)."""

    app_name: str
    timeout: float | None
    max_retries: int
    retry: RetryPolicy
    metadata: MetadataArg
    compression: bool
    wait_for_ready: bool
    stream_first_chunk_timeout: float | None
    stream_idle_timeout: float | None
    stream_resume: bool


class ClientOptions(ClientDefaults, total=False):
    """What `with_options` can change: the call defaults, and the API key.

    ``api_key`` gives a client that calls with another key over the same
    channel (per-caller credentials in a multi-tenant service).
    """

    api_key: str


class ClientBase(ClientConstructor, Generic[T]):
    """The constructor, settings and `with_options` shared by ApexClient and AsyncApexClient.

    The constructor (`ClientConstructor`, generated from the options
    `ClientSettings` declares) checks every option once; `_start` opens the
    client on the result.
    """

    _transport: T

    def _start(self, settings: ClientSettings) -> None:
        configure_from_env()
        warn_if_grpc_traces_headers()
        self._settings = settings
        self._check_interceptors(settings.interceptors)
        self._owns_transport = True
        self._transport = self._open_transport()
        self._make_resources()

    _takes_aio_interceptors: ClassVar[bool] = False

    def _check_interceptors(self, interceptors: Sequence[Any]) -> None:
        for interceptor in interceptors:
            is_aio = isinstance(interceptor, grpc.aio.ClientInterceptor)
            if is_aio is not self._takes_aio_interceptors:
                raise ValidationError(
                    "interceptors",
                    "AsyncApexClient takes grpc.aio client interceptors"
                    if self._takes_aio_interceptors
                    else "grpc.aio interceptors belong to AsyncApexClient",
                )

    def _open_transport(self) -> T:
        raise NotImplementedError

    def _make_resources(self) -> None:
        raise NotImplementedError

    @property
    def settings(self) -> ClientSettings:
        """Everything this client is configured with (frozen)."""
        return self._settings

    def with_options(self, **changes: Unpack[ClientOptions]) -> Self:
        """A client sharing this one's channel, with other call defaults.

        The changes are checked as the constructor checks them. Closing the
        derived client does not close the shared channel; close the original.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._settings = self._settings.replace(**changes)
        clone._owns_transport = False
        clone._make_resources()
        return clone

    @property
    def base_url(self) -> str:
        """The endpoint as given (argument or environment)."""
        return self._settings.base_url

    @property
    def target(self) -> str:
        """The gRPC target the channel dials."""
        return self._settings.target

    @property
    def secure(self) -> bool:
        """Whether the channel uses TLS."""
        return self._settings.secure

    @property
    def timeout(self) -> float | None:
        """The default overall deadline of a call, in seconds (None: no deadline)."""
        return self._settings.call_defaults.timeout

    @property
    def max_retries(self) -> int:
        """How many times a failed call may be retried."""
        return self._settings.retry_policy.max_retries

    @property
    def app_name(self) -> str:
        """Sent as ``x-source`` on every call."""
        return self._settings.app_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, target={self.target!r}, "
            f"secure={self.secure}, timeout={self.timeout}, max_retries={self.max_retries}, "
            "api_key='***')"
        )


class ApexClient(ClientBase[SyncTransport]):
    """The synchronous Apex client (grpcio): thread-safe, one channel for all calls.

    ``client.chat.completions.create(...)``, ``client.web_search.search(...)``,
    ``client.deep_research``, ``client.chats``. Use it as a context manager or
    call `close()`.
    """

    def _open_transport(self) -> SyncTransport:
        return SyncTransport(self._settings)

    def _make_resources(self) -> None:
        settings, transport = self._settings, self._transport
        self.chat = Chat(Completions(settings, transport))
        self.completions = self.chat.completions
        self.web_search = WebSearch(settings, transport)
        self.deep_research = DeepResearch(settings, transport)
        self.chats = Chats(settings, transport)

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
