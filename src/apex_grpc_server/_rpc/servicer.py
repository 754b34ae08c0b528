"""apex.v1.ApexService: each method validates, then hands over to the part that owns the work."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._chat.completions import ChatCompletions
from apex_grpc_server._engines import ChatRequest, Message
from apex_grpc_server._research.jobs import ResearchJobs
from apex_grpc_server._rpc.call_scope import CallContext, CallPolicy, server_stream, unary
from apex_grpc_server._rpc.idempotency import once
from apex_grpc_server._search.index import SearchIndex, SearchTimeout
from apex_grpc_server._status import RpcAbort, invalid_argument, not_found, shown
from apex_grpc_server._store import (
    ChatRow,
    CompletionRow,
    JobRow,
    NewCompletion,
    Storage,
    default_title,
)
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._wire import convert
from apex_grpc_server._wire import validation as validate
from apex_grpc_server._wire.reply_limits import ListingLimit

HISTORY_TURNS = 6
"""Earlier turns of a chat sent to the engine with a new prompt (fewer if they do not fit)."""
MAX_METADATA_BYTES = 256 * 1024
"""Largest metadata patch UpdateCompletionAttributes accepts, as JSON."""


class ApexServicer(pb_grpc.ApexServiceServicer):
    """The 16 RPCs of apex.v1.ApexService."""

    def __init__(
        self,
        policy: CallPolicy,
        completions: ChatCompletions,
        index: SearchIndex,
        store: Storage,
        research: ResearchJobs,
    ) -> None:
        self.policy = policy
        self.completions = completions
        self.index = index
        self.store = store
        self.research = research
        # Refuses a write after which a listing could not be sent back (inside its transaction).
        self._readable = ListingLimit(completions.max_message_bytes)

    # Chat ------------------------------------------------------------------

    @unary
    async def ChatCompletion(
        self, request: pb.ChatCompletionRequest, call: CallContext
    ) -> pb.ChatCompletionResponse:
        chat = validate.chat(request, continue_final=validate.continuing(call.metadata))
        call.trailing.extend(self.completions.context_metadata())
        return await self.completions.complete(chat, call.knobs)

    @server_stream
    async def ChatCompletionStream(
        self, request: pb.ChatCompletionRequest, call: CallContext
    ) -> AsyncGenerator[pb.ChatCompletionChunkResponse, None]:
        chat = validate.chat(request, continue_final=validate.continuing(call.metadata))
        call.trailing.extend(self.completions.context_metadata())
        async for chunk in self.completions.stream(chat, call.knobs):
            yield chunk

    # Web retrieval ---------------------------------------------------------

    @unary
    async def WebRetrieval(
        self, request: pb.WebRetrievalRequest, call: CallContext
    ) -> pb.WebRetrievalResponse:
        search = validate.web_retrieval(request)
        try:
            hits = await self.index.search(search.query, search.n_results, search.budget_s)
        except SearchTimeout as timeout:
            raise RpcAbort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"max_response_time: {timeout}"
            ) from None
        return pb.WebRetrievalResponse(
            results=[
                pb.WebSearchResult(url=hit.url, content=hit.content, relevant=hit.relevant)
                for hit in hits
            ]
        )

    # Deep research ---------------------------------------------------------

    @unary
    async def SubmitDeepResearcherJob(
        self, request: pb.ChatCompletionRequest, call: CallContext
    ) -> pb.SubmitDeepResearcherJobResponse:
        chat = validate.chat(request)

        async def write(key: KeyRecord | None) -> JobRow:
            return await self.research.submit(
                call.user_id,
                chat,
                request.SerializeToString(),
                call.knobs,
                check=self._readable,
                key=key,
            )

        def reply(job: JobRow) -> pb.SubmitDeepResearcherJobResponse:
            return pb.SubmitDeepResearcherJobResponse(
                job_id=job.id,
                status=job.status,
                created_at=convert.rfc3339(job.created_us),
                updated_at=convert.rfc3339(job.updated_us),
            )

        return await once(
            self.store, call, request, pb.SubmitDeepResearcherJobResponse, write, reply
        )

    @unary
    async def GetDeepResearcherJob(
        self, request: pb.GetDeepResearcherJobRequest, call: CallContext
    ) -> pb.GetDeepResearcherJobResponse:
        job_id = validate.identifier("job_id", request.job_id)
        job = await self.store.jobs.get(call.user_id, job_id)
        if job is None:
            raise not_found("job", job_id)
        return convert.job(job)

    # Stored chats ----------------------------------------------------------

    @unary
    async def GetChatSessions(
        self, request: pb.GetChatSessionsRequest, call: CallContext
    ) -> pb.GetChatSessionsResponse:
        chat_type = validate.name("chat_type", request.chat_type, "")
        chats = await self.store.chats.of_user(call.user_id, chat_type)
        return pb.GetChatSessionsResponse(chat_sessions=[convert.chat_session(c) for c in chats])

    @unary
    async def GetStoredChatCompletions(
        self, request: pb.GetStoredChatCompletionsRequest, call: CallContext
    ) -> pb.GetStoredChatCompletionsResponse:
        chat_id = validate.identifier("chat_id", request.chat_id)
        rows = await self.store.chats.completions(call.user_id, chat_id)
        if rows is None:
            raise not_found("chat", chat_id)
        return pb.GetStoredChatCompletionsResponse(
            chat_completions=[convert.stored_completion(row) for row in rows]
        )

    @unary
    async def GetChatCompletion(
        self, request: pb.GetChatCompletionRequest, call: CallContext
    ) -> pb.StoredChatCompletion:
        completion_id = validate.identifier("completion_id", request.completion_id)
        row = await self.store.completions.get(call.user_id, completion_id)
        if row is None:
            raise not_found("completion", completion_id)
        return convert.stored_completion(row)

    @unary
    async def UpdateChatAttributes(
        self, request: pb.UpdateChatAttributesRequest, call: CallContext
    ) -> pb.UpdateChatAttributesResponse:
        chat_id = validate.identifier("chat_id", request.chat_id)
        attributes = dict(request.attributes)
        if not attributes:
            raise invalid_argument("attributes: must not be empty (settable: title, chat_type)")
        for key in attributes:
            if key not in ("title", "chat_type"):
                raise invalid_argument(
                    f"attributes: unknown attribute {shown(key)} (expected title, chat_type)"
                )
        title = attributes.get("title")
        if title is not None:
            validate.title("attributes['title']", title)
        chat_type = attributes.get("chat_type")
        if chat_type is not None:
            validate.title("attributes['chat_type']", chat_type)
            validate.name("attributes['chat_type']", chat_type, "")

        async def write(key: KeyRecord | None) -> ChatRow:
            row = await self.store.chats.update(call.user_id, chat_id, title, chat_type, key=key)
            if row is None:
                raise not_found("chat", chat_id)
            return row

        def reply(row: ChatRow) -> pb.UpdateChatAttributesResponse:
            return pb.UpdateChatAttributesResponse(chat=convert.chat_session(row))

        return await once(self.store, call, request, pb.UpdateChatAttributesResponse, write, reply)

    @unary
    async def DeleteChats(
        self, request: pb.DeleteChatsRequest, call: CallContext
    ) -> pb.DeleteChatsResponse:
        chat_ids = validate.identifiers("chat_ids", request.chat_ids)

        async def write(key: KeyRecord | None) -> list[str]:
            missing = await self.store.chats.delete(call.user_id, chat_ids, key=key)
            if missing:
                raise not_found("chat", missing[0])
            return missing

        return await once(
            self.store,
            call,
            request,
            pb.DeleteChatsResponse,
            write,
            lambda _: pb.DeleteChatsResponse(success=True),
        )

    @unary
    async def CreateChatAndCompletion(
        self, request: pb.CreateChatAndCompletionRequest, call: CallContext
    ) -> pb.CreateChatAndCompletionResponse:
        prompt = validate.prompt("user_prompt", request.user_prompt)
        chat_type = validate.name("chat_type", request.chat_type, "apex")
        completion_type = validate.name("completion_type", request.completion_type, "basic")
        title = (
            validate.title("title", request.title)
            if request.HasField("title")
            else default_title(prompt)
        )

        async def write(key: KeyRecord | None) -> tuple[ChatRow, CompletionRow]:
            text = await self._answer(call, [], prompt)
            return await self.store.chats.create(
                call.user_id,
                title,
                chat_type,
                NewCompletion(prompt, text, completion_type, {}),
                check=self._readable,
                key=key,
            )

        def reply(rows: tuple[ChatRow, CompletionRow]) -> pb.CreateChatAndCompletionResponse:
            return pb.CreateChatAndCompletionResponse(
                parsed_chat=convert.parsed_chat(rows[0]),
                parsed_completion=convert.parsed_completion(rows[1]),
            )

        return await once(
            self.store, call, request, pb.CreateChatAndCompletionResponse, write, reply
        )

    @unary
    async def CreateCompletion(
        self, request: pb.CreateCompletionRequest, call: CallContext
    ) -> pb.CreateCompletionResponse:
        chat_id = validate.identifier("chat_id", request.chat_id)
        prompt = validate.prompt("user_prompt", request.user_prompt)
        completion_type = validate.name("completion_type", request.completion_type, "basic")

        async def write(key: KeyRecord | None) -> CompletionRow:
            history = await self.store.chats.completions(call.user_id, chat_id)
            if history is None:
                raise not_found("chat", chat_id)
            text = await self._answer(call, history, prompt)
            row = await self.store.chats.add_completion(
                call.user_id,
                chat_id,
                NewCompletion(prompt, text, completion_type, {}),
                check=self._readable,
                key=key,
            )
            if row is None:  # deleted while the answer was being generated
                raise not_found("chat", chat_id)
            return row

        def reply(row: CompletionRow) -> pb.CreateCompletionResponse:
            return pb.CreateCompletionResponse(parsed_completion=convert.parsed_completion(row))

        return await once(self.store, call, request, pb.CreateCompletionResponse, write, reply)

    @unary
    async def DeleteCompletions(
        self, request: pb.DeleteCompletionsRequest, call: CallContext
    ) -> pb.DeleteCompletionsResponse:
        completion_ids = validate.identifiers("completion_ids", request.completion_ids)

        async def write(key: KeyRecord | None) -> list[str]:
            missing = await self.store.completions.delete(call.user_id, completion_ids, key=key)
            if missing:
                raise not_found("completion", missing[0])
            return missing

        return await once(
            self.store,
            call,
            request,
            pb.DeleteCompletionsResponse,
            write,
            lambda _: pb.DeleteCompletionsResponse(success=True),
        )

    @unary
    async def SearchChatIdsByPromptAndCompletionText(
        self, request: pb.SearchChatIdsByPromptAndCompletionTextRequest, call: CallContext
    ) -> pb.SearchChatIdsByPromptAndCompletionTextResponse:
        term = validate.search_term(request.search_term)
        chat_ids = await self.store.chats.search(call.user_id, term)
        return pb.SearchChatIdsByPromptAndCompletionTextResponse(chat_ids=chat_ids)

    @unary
    async def UpdateCompletionAttributes(
        self, request: pb.UpdateCompletionAttributesRequest, call: CallContext
    ) -> pb.UpdateCompletionAttributesResponse:
        completion_id = validate.identifier("completion_id", request.completion_id)
        text = None
        if request.HasField("completion_text"):
            text = validate.text("completion_text", request.completion_text)
        prompt = None
        if request.HasField("user_prompt_text"):
            prompt = validate.prompt("user_prompt_text", request.user_prompt_text)
        patch = _metadata_patch(request) if request.HasField("metadata") else None
        if text is None and prompt is None and patch is None:
            raise invalid_argument(
                "request: nothing to update (set completion_text, user_prompt_text or metadata)"
            )

        async def write(key: KeyRecord | None) -> CompletionRow:
            row = await self.store.completions.update(
                call.user_id,
                completion_id,
                text=text,
                prompt=prompt,
                metadata_patch=patch,
                check=self._readable,
                key=key,
            )
            if row is None:
                raise not_found("completion", completion_id)
            return row

        def reply(row: CompletionRow) -> pb.UpdateCompletionAttributesResponse:
            return pb.UpdateCompletionAttributesResponse(completion=convert.stored_completion(row))

        return await once(
            self.store, call, request, pb.UpdateCompletionAttributesResponse, write, reply
        )

    @unary
    async def GetCompletionsWithDeepResearcherEntry(
        self, request: empty_pb2.Empty, call: CallContext
    ) -> pb.GetCompletionsWithDeepResearcherEntryResponse:
        rows = await self.store.completions.deep_research(call.user_id)
        return pb.GetCompletionsWithDeepResearcherEntryResponse(
            completions=[convert.parsed_completion(row) for row in rows]
        )

    # Helpers ---------------------------------------------------------------

    async def _answer(self, call: CallContext, history: list[CompletionRow], prompt: str) -> str:
        """The engine's answer to ``prompt`` after the chat's recent turns.

        The engine drops the oldest of those turns when they do not fit its
        context window with room for the answer (``ChatRequest.fit_context``).
        """
        messages: list[Message] = []
        for row in history[-HISTORY_TURNS:]:
            if row.completion_text:
                messages += [
                    Message("user", row.user_prompt_text),
                    Message("assistant", row.completion_text),
                ]
        messages.append(Message("user", prompt))
        request = ChatRequest(tuple(messages), fit_context=True)
        text, _ = await self.completions.text(request, None, call.knobs)
        return text


def _metadata_patch(request: pb.UpdateCompletionAttributesRequest) -> dict[str, Any]:
    patch = convert.struct_to_dict(request.metadata, "metadata")
    size = len(json.dumps(patch))
    if size > MAX_METADATA_BYTES:
        raise invalid_argument(f"metadata: at most {MAX_METADATA_BYTES} bytes of JSON, got {size}")
    return patch
