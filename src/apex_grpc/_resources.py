"""The resources of both clients: chat.completions, web_search, deep_research and chats.

Unary methods are declared once, as `Rpc(builder)` on a shared base class;
each client's resource class gets a real function per method (sync or
``async def``) with its true name, docstring and signature. Only
``chat.completions.create`` (typed overloads on ``stream``) and the
deep-research pollers are written per client; they differ by ``await``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypeVar,
    Unpack,
    overload,
)

from google.protobuf.message import Message

from apex_grpc._requests import Prepared, chats, research, search
from apex_grpc._requests.chat import ChatCompletionParams, prepare_chat
from apex_grpc._research import DEFAULT_POLL, JobProgress, JobWatch, PollOptions, PollPolicy
from apex_grpc._settings.client import ClientSettings
from apex_grpc._signatures import method_signature
from apex_grpc._streaming.aio import AsyncChatCompletionStream
from apex_grpc._streaming.sync import ChatCompletionStream
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

if TYPE_CHECKING:
    from apex_grpc._async_client import AsyncApexClient
    from apex_grpc._client import ApexClient
    from apex_grpc._transport.aio import AsyncTransport
    from apex_grpc._transport.sync import SyncTransport

P = ParamSpec("P")
R = TypeVar("R", bound=Message)


class SyncResource:
    """Base of the sync client's resources: what a method needs from its client."""

    def __init__(self, client: ApexClient) -> None:
        self._settings: ClientSettings = client.settings
        self._transport: SyncTransport = client._transport

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _define_rpcs(cls, is_async=False)


class AsyncResource:
    """Base of the async client's resources."""

    def __init__(self, client: AsyncApexClient) -> None:
        self._settings: ClientSettings = client.settings
        self._transport: AsyncTransport = client._transport

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _define_rpcs(cls, is_async=True)


class Rpc(Generic[P, R]):
    """A unary method made from a request builder, declared once for both clients.

    Each resource class gets its own function for it (see `_define_rpcs`); to
    a type checker it is a method taking the builder's parameters and
    returning the response (awaitable on the async client).
    """

    def __init__(self, build: Callable[Concatenate[ClientSettings, P], Prepared[Any, R]]) -> None:
        self.build = build

    @overload
    def __get__(self, resource: None, owner: type) -> Rpc[P, R]: ...
    @overload
    def __get__(self, resource: SyncResource, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(
        self, resource: AsyncResource, owner: type
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, resource: object, owner: type) -> Any:
        return self  # replaced by a real function on every resource class

    def function(self, owner: type, name: str, *, is_async: bool) -> Callable[..., Any]:
        """The method `owner.name`: runs the call the builder prepares."""
        build = self.build
        method: Callable[..., Any]
        if is_async:

            async def method(self: AsyncResource, /, *args: Any, **kwargs: Any) -> Any:
                return await self._transport.unary(build(self._settings, *args, **kwargs))

        else:

            def method(self: SyncResource, /, *args: Any, **kwargs: Any) -> Any:
                return self._transport.unary(build(self._settings, *args, **kwargs))

        method.__name__ = name
        method.__qualname__ = f"{owner.__qualname__}.{name}"
        method.__module__ = owner.__module__
        method.__doc__ = build.__doc__
        response = build.method.response_type  # type: ignore[attr-defined]
        signature = method_signature(build, returns=response, drop_first=True)
        setattr(method, "__signature__", signature)  # noqa: B010 - no such attribute in typeshed
        return method


def _define_rpcs(cls: type, *, is_async: bool) -> None:
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Rpc):
                setattr(cls, name, value.function(cls, name, is_async=is_async))


F = TypeVar("F", bound=Callable[..., Any])


def truthful(returns: Any) -> Callable[[F], F]:
    """Give a method taking ``**params: Unpack[...]`` its spelled-out signature."""

    def decorate(function: F) -> F:
        setattr(function, "__signature__", method_signature(function, returns=returns))  # noqa: B010
        return function

    return decorate


# chat.completions


class Completions(SyncResource):
    """``client.chat.completions``."""

    @overload
    def create(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse: ...
    @overload
    def create(
        self, *, stream: Literal[True], **params: Unpack[ChatCompletionParams]
    ) -> ChatCompletionStream: ...
    @overload
    def create(
        self, *, stream: bool, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | ChatCompletionStream: ...
    @truthful(returns=pb.ChatCompletionResponse | ChatCompletionStream)
    def create(
        self, *, stream: bool = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | ChatCompletionStream:
        """Generate a chat completion; ``stream=True`` returns a ChatCompletionStream.

        Keywords: messages (required), sampling_parameters, seed, model, uids,
        task, inference_mode, test_time_inference, mixture, json_format; the
        call options (timeout, metadata, max_retries, retry, compression,
        wait_for_ready, call_info); and for streams first_chunk_timeout and
        idle_timeout.
        """
        prepared = prepare_chat(self._settings, params, stream=stream)
        if stream:
            return self._transport.stream(prepared)
        response: pb.ChatCompletionResponse = self._transport.unary(prepared)
        return response


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
    @truthful(returns=pb.ChatCompletionResponse | AsyncChatCompletionStream)
    async def create(
        self, *, stream: bool = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | AsyncChatCompletionStream:
        """Generate a chat completion; ``stream=True`` returns an AsyncChatCompletionStream.

        Same keywords as the sync client's ``chat.completions.create``.
        """
        prepared = prepare_chat(self._settings, params, stream=stream)
        if stream:
            return self._transport.stream(prepared)
        response: pb.ChatCompletionResponse = await self._transport.unary(prepared)
        return response


class Chat(SyncResource):
    """``client.chat``."""

    def __init__(self, client: ApexClient) -> None:
        super().__init__(client)
        self.completions = Completions(client)


class AsyncChat(AsyncResource):
    """``client.chat`` of the async client."""

    def __init__(self, client: AsyncApexClient) -> None:
        super().__init__(client)
        self.completions = AsyncCompletions(client)


# web_search


class _WebSearchMethods:
    search = Rpc(search.web_search)


class WebSearch(_WebSearchMethods, SyncResource):
    """``client.web_search``."""


class AsyncWebSearch(_WebSearchMethods, AsyncResource):
    """``client.web_search`` of the async client."""


# deep_research


class _DeepResearchMethods:
    submit = Rpc(research.submit_deep_research)
    create_job = Rpc(research.submit_deep_research)
    """The official SDK's name for `submit`."""
    get = Rpc(research.get_deep_research)
    get_job_results = Rpc(research.get_deep_research)
    """The official SDK's name for `get`."""


class DeepResearch(_DeepResearchMethods, SyncResource):
    """``client.deep_research``: submit jobs, fetch them, follow them to the end."""

    @truthful(returns=Iterator[JobProgress])
    def follow(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> Iterator[JobProgress]:
        """Poll the job with backoff, yielding a `JobProgress` per poll until it is over.

        timeout: seconds to follow the job in all (DeepResearchTimeoutError
            after; the job goes on running on the server).
        poll: how often to poll (PollPolicy).
        The call options (metadata, max_retries, retry, compression,
        wait_for_ready) apply to each poll. The last progress has ``done=True``;
        if the job failed, DeepResearchJobError is raised after it.
        """
        watch = JobWatch(job_id, timeout=timeout, policy=poll)
        while (delay := watch.next_delay()) is not None:
            time.sleep(delay)
            with watch.polling(options) as poll_options:
                yield watch.update(self.get(job_id, **poll_options))

    @truthful(returns=Iterator[pb.DeepResearcherResultChunk])
    def stream(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> Iterator[pb.DeepResearcherResultChunk]:
        """Yield the job's result chunks as they appear, until it completes (see `follow`)."""
        for progress in self.follow(job_id, timeout=timeout, poll=poll, **options):
            yield from progress.new_chunks

    @truthful(returns=pb.GetDeepResearcherJobResponse)
    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> pb.GetDeepResearcherJobResponse:
        """Poll until the job completes; returns its final state (see `follow`)."""
        *_, last = self.follow(job_id, timeout=timeout, poll=poll, **options)
        return last.response


class AsyncDeepResearch(_DeepResearchMethods, AsyncResource):
    """``client.deep_research`` of the async client."""

    @truthful(returns=AsyncIterator[JobProgress])
    async def follow(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> AsyncIterator[JobProgress]:
        """Poll the job with backoff, yielding a `JobProgress` per poll (see the sync client)."""
        watch = JobWatch(job_id, timeout=timeout, policy=poll)
        while (delay := watch.next_delay()) is not None:
            await asyncio.sleep(delay)
            with watch.polling(options) as poll_options:
                yield watch.update(await self.get(job_id, **poll_options))

    @truthful(returns=AsyncIterator[pb.DeepResearcherResultChunk])
    async def stream(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> AsyncIterator[pb.DeepResearcherResultChunk]:
        """Yield the job's result chunks as they appear, until it completes."""
        async for progress in self.follow(job_id, timeout=timeout, poll=poll, **options):
            for chunk in progress.new_chunks:
                yield chunk

    @truthful(returns=pb.GetDeepResearcherJobResponse)
    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: PollPolicy = DEFAULT_POLL,
        **options: Unpack[PollOptions],
    ) -> pb.GetDeepResearcherJobResponse:
        """Poll until the job completes; returns its final state."""
        async for progress in self.follow(job_id, timeout=timeout, poll=poll, **options):
            last = progress
        return last.response


# chats


class _ChatsMethods:
    list_sessions = Rpc(chats.list_sessions)
    list_completions = Rpc(chats.list_completions)
    get_completion = Rpc(chats.get_completion)
    update = Rpc(chats.update_chat)
    delete = Rpc(chats.delete_chats)
    create = Rpc(chats.create_chat)
    create_completion = Rpc(chats.create_completion)
    delete_completions = Rpc(chats.delete_completions)
    search = Rpc(chats.search_chats)
    update_completion = Rpc(chats.update_completion)
    list_deep_research_completions = Rpc(chats.list_deep_research_completions)


class Chats(_ChatsMethods, SyncResource):
    """``client.chats``: stored chat sessions and completions."""


class AsyncChats(_ChatsMethods, AsyncResource):
    """``client.chats`` of the async client."""
