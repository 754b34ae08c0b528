"""apex.v1.ApexService: each method validates, then hands over to the part that owns the work."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from google.protobuf import empty_pb2

from apex_grpc.server import _validation as validate
from apex_grpc.server._calls import Call, CallPolicy, server_stream, unary
from apex_grpc.server._chat import Completions
from apex_grpc.server._search import SearchIndex, SearchTimeout
from apex_grpc.server._status import RpcAbort
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc


class ApexServicer(pb_grpc.ApexServiceServicer):
    """The 16 RPCs of apex.v1.ApexService."""

    def __init__(self, policy: CallPolicy, completions: Completions, index: SearchIndex) -> None:
        self.policy = policy
        self.completions = completions
        self.index = index

    # Chat ------------------------------------------------------------------

    @unary
    async def ChatCompletion(
        self, request: pb.ChatCompletionRequest, call: Call
    ) -> pb.ChatCompletionResponse:
        return await self.completions.complete(validate.chat(request), call.knobs)

    @server_stream
    async def ChatCompletionStream(
        self, request: pb.ChatCompletionRequest, call: Call
    ) -> AsyncGenerator[pb.ChatCompletionChunkResponse, None]:
        chat = validate.chat(request)
        async for chunk in self.completions.stream(chat, call.knobs):
            yield chunk

    # Web retrieval ---------------------------------------------------------

    @unary
    async def WebRetrieval(
        self, request: pb.WebRetrievalRequest, call: Call
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
        self, request: pb.ChatCompletionRequest, call: Call
    ) -> pb.SubmitDeepResearcherJobResponse:
        raise _later()

    @unary
    async def GetDeepResearcherJob(
        self, request: pb.GetDeepResearcherJobRequest, call: Call
    ) -> pb.GetDeepResearcherJobResponse:
        raise _later()

    # Stored chats ----------------------------------------------------------

    @unary
    async def GetChatSessions(
        self, request: pb.GetChatSessionsRequest, call: Call
    ) -> pb.GetChatSessionsResponse:
        raise _later()

    @unary
    async def GetStoredChatCompletions(
        self, request: pb.GetStoredChatCompletionsRequest, call: Call
    ) -> pb.GetStoredChatCompletionsResponse:
        raise _later()

    @unary
    async def GetChatCompletion(
        self, request: pb.GetChatCompletionRequest, call: Call
    ) -> pb.StoredChatCompletion:
        raise _later()

    @unary
    async def UpdateChatAttributes(
        self, request: pb.UpdateChatAttributesRequest, call: Call
    ) -> pb.UpdateChatAttributesResponse:
        raise _later()

    @unary
    async def DeleteChats(
        self, request: pb.DeleteChatsRequest, call: Call
    ) -> pb.DeleteChatsResponse:
        raise _later()

    @unary
    async def CreateChatAndCompletion(
        self, request: pb.CreateChatAndCompletionRequest, call: Call
    ) -> pb.CreateChatAndCompletionResponse:
        raise _later()

    @unary
    async def CreateCompletion(
        self, request: pb.CreateCompletionRequest, call: Call
    ) -> pb.CreateCompletionResponse:
        raise _later()

    @unary
    async def DeleteCompletions(
        self, request: pb.DeleteCompletionsRequest, call: Call
    ) -> pb.DeleteCompletionsResponse:
        raise _later()

    @unary
    async def SearchChatIdsByPromptAndCompletionText(
        self, request: pb.SearchChatIdsByPromptAndCompletionTextRequest, call: Call
    ) -> pb.SearchChatIdsByPromptAndCompletionTextResponse:
        raise _later()

    @unary
    async def UpdateCompletionAttributes(
        self, request: pb.UpdateCompletionAttributesRequest, call: Call
    ) -> pb.UpdateCompletionAttributesResponse:
        raise _later()

    @unary
    async def GetCompletionsWithDeepResearcherEntry(
        self, request: empty_pb2.Empty, call: Call
    ) -> pb.GetCompletionsWithDeepResearcherEntryResponse:
        raise _later()


def _later() -> RpcAbort:
    return RpcAbort(grpc.StatusCode.UNIMPLEMENTED, "stored chats and jobs arrive in milestone 2")
