"""What every resource method needs: the client's settings and its transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apex_grpc._settings.client import ClientSettings

if TYPE_CHECKING:  # the sync client never loads the aio transport
    from apex_grpc._transport.aio import AsyncTransport
    from apex_grpc._transport.sync import SyncTransport


class SyncResource:
    """Base of the sync client's resources."""

    __slots__ = ("_settings", "_transport")

    def __init__(self, settings: ClientSettings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport


class AsyncResource:
    """Base of the async client's resources."""

    __slots__ = ("_settings", "_transport")

    def __init__(self, settings: ClientSettings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport
