"""AsyncApexClient: the grpc.aio client, sharing ApexClient's constructor and core.

Imported lazily by `apex_grpc` (``from apex_grpc import AsyncApexClient``
works as usual), so sync-only programs never load the aio transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc
import grpc.aio

from apex_grpc._async_resources import (
    AsyncChat,
    AsyncChats,
    AsyncCompletions,
    AsyncDeepResearch,
    AsyncWebSearch,
)
from apex_grpc._async_stream import AsyncChatCompletionStream
from apex_grpc._async_transport import AsyncTransport
from apex_grpc._call import Call
from apex_grpc._client import _ClientBase
from apex_grpc._errors import UnavailableError, ValidationError
from apex_grpc._methods import CHAT_COMPLETION, Resp
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class AsyncApexClient(_ClientBase):
    """The asyncio Apex client (grpc.aio); same resources as ApexClient, awaited.

    The channel is opened lazily in the running event loop (one per loop
    that uses the client). Use ``async with`` or ``await client.close()``.
    """

    _transport: AsyncTransport

    def _make_transport(self, interceptors: Sequence[Any]) -> AsyncTransport:
        for interceptor in interceptors:
            if not isinstance(interceptor, grpc.aio.ClientInterceptor):
                raise ValidationError(
                    "interceptors", "AsyncApexClient takes grpc.aio client interceptors"
                )
        return AsyncTransport(self._config, interceptors)

    def _make_resources(self) -> None:
        self.chat = AsyncChat(self)
        self.completions: AsyncCompletions = self.chat.completions
        self.web_search = AsyncWebSearch(self)
        self.deep_research = AsyncDeepResearch(self)
        self.chats = AsyncChats(self)

    async def _run_unary(self, call: Call[Any, Resp]) -> Resp:
        return await self._transport.unary(call, self._plan(call))

    async def _create_chat(
        self, stream: bool, params: Mapping[str, object]
    ) -> pb.ChatCompletionResponse | AsyncChatCompletionStream:
        prepared, plan = self._prepare_chat(stream, params)
        if stream:
            return self._transport.stream(prepared, plan, *self._stream_limits(prepared))
        return await self._transport.unary(Call(CHAT_COMPLETION, prepared.request), plan)

    def channel(self) -> grpc.aio.Channel:
        """The running event loop's channel."""
        return self._transport.channel()

    async def wait_until_ready(self, timeout: float | None = None) -> None:
        """Wait until the channel is connected; raises UnavailableError on timeout."""
        try:
            await asyncio.wait_for(self.channel().channel_ready(), timeout)
        except TimeoutError:
            raise UnavailableError(
                f"could not connect to {self.target} within {timeout}s"
            ) from None

    async def close(self) -> None:
        """Close the channels (no-op for clients made by `with_options`)."""
        if self._owns_transport:
            await self._transport.close()

    aclose = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
