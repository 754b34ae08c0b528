"""AsyncApexClient: the grpc.aio client, sharing ApexClient's constructor, settings and resources.

Imported lazily by `apex_grpc` (``from apex_grpc import AsyncApexClient``
works as usual), so sync-only programs never load the aio transport.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

import grpc
import grpc.aio

from apex_grpc._client import ClientBase
from apex_grpc._errors import UnavailableError
from apex_grpc._resources.chat_aio import AsyncChat, AsyncCompletions
from apex_grpc._resources.chats_aio import AsyncChats
from apex_grpc._resources.deep_research_aio import AsyncDeepResearch
from apex_grpc._resources.web_search_aio import AsyncWebSearch
from apex_grpc._transport.aio import AsyncTransport


class AsyncApexClient(ClientBase[AsyncTransport]):
    """The asyncio Apex client (grpc.aio); same resources as ApexClient, awaited.

    The channel is opened lazily in the running event loop (one per loop
    that uses the client). Use ``async with`` or ``await client.close()``.
    """

    _takes_aio_interceptors = True

    def _open_transport(self) -> AsyncTransport:
        return AsyncTransport(self._settings)

    def _make_resources(self) -> None:
        settings, transport = self._settings, self._transport
        self.chat = AsyncChat(AsyncCompletions(settings, transport))
        self.completions = self.chat.completions
        self.web_search = AsyncWebSearch(settings, transport)
        self.deep_research = AsyncDeepResearch(settings, transport)
        self.chats = AsyncChats(settings, transport)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The running event loop's grpc.aio channel (a property, as on ApexClient)."""
        return self._transport.channel

    async def wait_until_ready(self, timeout: float | None = None) -> None:
        """Wait until the channel is connected; raises UnavailableError on timeout."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            raise UnavailableError(
                f"could not connect to {self.target} within {timeout}s"
            ) from None

    async def close(self) -> None:
        """Close the channels (no-op for clients made by `with_options`)."""
        if self._owns_transport:
            await self._transport.close()

    async def aclose(self) -> None:
        """The same as `close()` (the name async resources often use)."""
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
