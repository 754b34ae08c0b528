"""Run one test body against both clients: the sync one (in a worker thread) and the aio one.

Each side exposes the same small async API, so a reliability test is written
once and parametrized over ``side``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import apex_grpc as mc


class SyncSide:
    """ApexClient, driven from a worker thread."""

    name = "sync"

    def __init__(self, client: mc.ApexClient) -> None:
        self.client = client

    async def chat(self, **kwargs: Any) -> mc.ChatCompletionResponse:
        return await asyncio.to_thread(lambda: self.client.chat.completions.create(**kwargs))

    async def stream(self, **kwargs: Any) -> tuple[list[str], Any]:
        """All chunk contents, and the stream (for its metadata)."""

        def run() -> tuple[list[str], Any]:
            stream = self.client.chat.completions.create(stream=True, **kwargs)
            parts = [c.choices[0].delta.content for c in stream]
            return parts, stream

        return await asyncio.to_thread(run)

    async def stream_metadata(self, stream: Any) -> tuple[Any, Any]:
        return await asyncio.to_thread(
            lambda: (stream.initial_metadata(), stream.trailing_metadata())
        )

    async def open_stream(self, **kwargs: Any) -> Any:
        return await asyncio.to_thread(
            lambda: self.client.chat.completions.create(stream=True, **kwargs)
        )

    async def next_chunk(self, stream: Any) -> Any:
        return await asyncio.to_thread(next, stream)

    async def close_stream(self, stream: Any) -> None:
        await asyncio.to_thread(stream.close)

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `fn(client, *args, **kwargs)` (a resource call) on this side."""
        return await asyncio.to_thread(fn, self.client, *args, **kwargs)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


class AsyncSide:
    """AsyncApexClient, awaited directly."""

    name = "async"

    def __init__(self, client: mc.AsyncApexClient) -> None:
        self.client = client

    async def chat(self, **kwargs: Any) -> mc.ChatCompletionResponse:
        return await self.client.chat.completions.create(**kwargs)

    async def stream(self, **kwargs: Any) -> tuple[list[str], Any]:
        stream = await self.client.chat.completions.create(stream=True, **kwargs)
        parts = [c.choices[0].delta.content async for c in stream]
        return parts, stream

    async def stream_metadata(self, stream: Any) -> tuple[Any, Any]:
        return await stream.initial_metadata(), await stream.trailing_metadata()

    async def open_stream(self, **kwargs: Any) -> Any:
        return await self.client.chat.completions.create(stream=True, **kwargs)

    async def next_chunk(self, stream: Any) -> Any:
        return await stream.__anext__()

    async def close_stream(self, stream: Any) -> None:
        await stream.close()

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await fn(self.client, *args, **kwargs)

    async def close(self) -> None:
        await self.client.close()


def make_side(kind: str, target: str, key: str, **kwargs: Any) -> SyncSide | AsyncSide:
    """A side of the given kind ("sync" or "async") bound to `target`."""
    from .conftest import FAST_RETRY

    kwargs.setdefault("retry", FAST_RETRY)
    if kind == "sync":
        return SyncSide(mc.ApexClient(api_key=key, base_url=target, secure=False, **kwargs))
    return AsyncSide(mc.AsyncApexClient(api_key=key, base_url=target, secure=False, **kwargs))


SIDES = ["sync", "async"]
