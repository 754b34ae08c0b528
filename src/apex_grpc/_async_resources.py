"""The resources of AsyncApexClient; see `_resources` for how they are made."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Unpack, overload

from apex_grpc import _operations as ops
from apex_grpc._async_stream import AsyncChatCompletionStream
from apex_grpc._call import Call
from apex_grpc._chat_params import ChatCompletionParams
from apex_grpc._research import DEFAULT_POLL, JobProgress, JobWatch, PollPolicy
from apex_grpc._resources import R
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

if TYPE_CHECKING:
    from apex_grpc._async_client import AsyncApexClient

P = ParamSpec("P")


class AsyncResource:
    """Base of the async resources: holds the client."""

    def __init__(self, client: AsyncApexClient) -> None:
        self._client = client


def async_unary(
    op: Callable[P, Call[Any, R]],
) -> Callable[Concatenate[AsyncResource, P], Coroutine[Any, Any, R]]:
    """An async resource method running the call `op` builds."""

    async def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._client._run_unary(op(*args, **kwargs))

    return functools.wraps(op)(method)


class AsyncCompletions(AsyncResource):
    """``client.chat.completions`` of the async client."""

    @overload
    async def create(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse: ...
    @overload
    async def create(
        self, *, stream: Literal[True], **params: Unpack[ChatCompletionParams]
    ) -> AsyncChatCompletionStream: ...
    @overload
    async def create(
        self, *, stream: bool, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | AsyncChatCompletionStream: ...
    async def create(
        self, *, stream: bool = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | AsyncChatCompletionStream:
        """Generate a chat completion; ``stream=True`` returns an AsyncChatCompletionStream.

        Same keywords as the sync client's ``chat.completions.create``.
        """
        return await self._client._create_chat(stream, params)


class AsyncChat(AsyncResource):
    """``client.chat`` of the async client."""

    def __init__(self, client: AsyncApexClient) -> None:
        super().__init__(client)
        self.completions = AsyncCompletions(client)


class AsyncWebSearch(AsyncResource):
    """``client.web_search`` of the async client."""

    search = async_unary(ops.web_search)


class AsyncDeepResearch(AsyncResource):
    """``client.deep_research`` of the async client."""

    submit = async_unary(ops.submit_deep_research)
    create_job = submit
    """The official SDK's name for `submit`."""
    get = async_unary(ops.get_deep_research)
    get_job_results = get
    """The official SDK's name for `get`."""

    async def follow(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> AsyncIterator[JobProgress]:
        """Poll the job with backoff, yielding a `JobProgress` per poll (see the sync client)."""
        watch = JobWatch(job_id, timeout=timeout, policy=poll)
        while True:
            progress = watch.update(await self.get(job_id))
            yield progress
            watch.raise_if_failed()
            if progress.done:
                return
            await asyncio.sleep(watch.next_delay())

    async def stream(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> AsyncIterator[pb.DeepResearcherResultChunk]:
        """Yield the job's result chunks as they appear, until it completes."""
        async for progress in self.follow(job_id, timeout=timeout, poll=poll):
            for chunk in progress.new_chunks:
                yield chunk

    async def wait(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> pb.GetDeepResearcherJobResponse:
        """Poll until the job completes; returns its final state."""
        final: pb.GetDeepResearcherJobResponse | None = None
        async for progress in self.follow(job_id, timeout=timeout, poll=poll):
            final = progress.response
        assert final is not None  # follow yields at least once, or raises
        return final


class AsyncChats(AsyncResource):
    """``client.chats`` of the async client."""

    list_sessions = async_unary(ops.list_sessions)
    list_completions = async_unary(ops.list_completions)
    get_completion = async_unary(ops.get_completion)
    update = async_unary(ops.update_chat)
    delete = async_unary(ops.delete_chats)
    create = async_unary(ops.create_chat)
    create_completion = async_unary(ops.create_completion)
    delete_completions = async_unary(ops.delete_completions)
    search = async_unary(ops.search_chats)
    update_completion = async_unary(ops.update_completion)
    list_deep_research_completions = async_unary(ops.list_deep_research_completions)
