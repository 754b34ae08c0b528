"""The resources of the sync client: ``chat.completions``, ``web_search``,
``deep_research`` and ``chats`` (the async twins are in `_async_resources`).

Unary methods are made from the pure operations in `_operations` by
`sync_unary` / `async_unary`, which keep each operation's signature and
docstring: a method's parameters are written once, for both clients. Only
``chat.completions.create`` (typed overloads on ``stream``) and the
deep-research pollers are spelled out per client; they differ by ``await``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, Unpack, overload

from google.protobuf.message import Message

from apex_grpc import _operations as ops
from apex_grpc._call import Call
from apex_grpc._chat_params import ChatCompletionParams
from apex_grpc._research import DEFAULT_POLL, JobProgress, JobWatch, PollPolicy
from apex_grpc._stream import ChatCompletionStream
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

if TYPE_CHECKING:
    from apex_grpc._client import ApexClient

P = ParamSpec("P")
R = TypeVar("R", bound=Message)


class SyncResource:
    """Base of the sync resources: holds the client."""

    def __init__(self, client: ApexClient) -> None:
        self._client = client


def sync_unary(op: Callable[P, Call[Any, R]]) -> Callable[Concatenate[SyncResource, P], R]:
    """A sync resource method running the call `op` builds."""

    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._client._run_unary(op(*args, **kwargs))

    return functools.wraps(op)(method)


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
    def create(
        self, *, stream: bool = False, **params: Unpack[ChatCompletionParams]
    ) -> pb.ChatCompletionResponse | ChatCompletionStream:
        """Generate a chat completion; ``stream=True`` returns a ChatCompletionStream.

        Keywords: messages (required), sampling_parameters, seed, model, uids,
        task, inference_mode, test_time_inference, mixture, json_format, and
        the call options (timeout, metadata, max_retries, retry, compression,
        wait_for_ready, first_chunk_timeout, idle_timeout).
        """
        return self._client._create_chat(stream, params)


class Chat(SyncResource):
    """``client.chat``."""

    def __init__(self, client: ApexClient) -> None:
        super().__init__(client)
        self.completions = Completions(client)


# web_search


class WebSearch(SyncResource):
    """``client.web_search``."""

    search = sync_unary(ops.web_search)


# deep_research


class DeepResearch(SyncResource):
    """``client.deep_research``: submit jobs, fetch them, follow them to the end."""

    submit = sync_unary(ops.submit_deep_research)
    create_job = submit
    """The official SDK's name for `submit`."""
    get = sync_unary(ops.get_deep_research)
    get_job_results = get
    """The official SDK's name for `get`."""

    def follow(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> Iterator[JobProgress]:
        """Poll the job with backoff, yielding a `JobProgress` per poll until it is over.

        The last progress has ``done=True``. If the job failed, DeepResearchJobError
        is raised after that last progress; DeepResearchTimeoutError after `timeout`
        seconds.
        """
        watch = JobWatch(job_id, timeout=timeout, policy=poll)
        while True:
            progress = watch.update(self.get(job_id))
            yield progress
            watch.raise_if_failed()
            if progress.done:
                return
            time.sleep(watch.next_delay())

    def stream(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> Iterator[pb.DeepResearcherResultChunk]:
        """Yield the job's result chunks as they appear, until it completes (see `follow`)."""
        for progress in self.follow(job_id, timeout=timeout, poll=poll):
            yield from progress.new_chunks

    def wait(
        self, job_id: str, *, timeout: float | None = None, poll: PollPolicy = DEFAULT_POLL
    ) -> pb.GetDeepResearcherJobResponse:
        """Poll until the job completes; returns its final state (see `follow`)."""
        *_, last = self.follow(job_id, timeout=timeout, poll=poll)
        return last.response


# chats


class Chats(SyncResource):
    """``client.chats``: stored chat sessions and completions."""

    list_sessions = sync_unary(ops.list_sessions)
    list_completions = sync_unary(ops.list_completions)
    get_completion = sync_unary(ops.get_completion)
    update = sync_unary(ops.update_chat)
    delete = sync_unary(ops.delete_chats)
    create = sync_unary(ops.create_chat)
    create_completion = sync_unary(ops.create_completion)
    delete_completions = sync_unary(ops.delete_completions)
    search = sync_unary(ops.search_chats)
    update_completion = sync_unary(ops.update_completion)
    list_deep_research_completions = sync_unary(ops.list_deep_research_completions)
