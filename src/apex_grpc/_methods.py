"""The 16 RPCs of apex.v1.ApexService as typed, immutable method descriptions.

Transports build one grpc multi-callable per method per channel from this
table, once; nothing is looked up per call.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

SERVICE = "apex.v1.ApexService"

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Method(Generic[Req, Resp]):
    """One RPC: its name, full HTTP/2 path, message types and shape (compared by identity)."""

    __slots__ = ("name", "path", "request_type", "response_type", "server_streaming")

    def __init__(
        self,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        server_streaming: bool = False,
    ) -> None:
        self.name = name
        self.path = f"/{SERVICE}/{name}"
        """E.g. ``/apex.v1.ApexService/ChatCompletion``."""
        self.request_type = request_type
        self.response_type = response_type
        self.server_streaming = server_streaming

    def __repr__(self) -> str:
        return f"Method({self.path})"


CHAT_COMPLETION = Method("ChatCompletion", pb.ChatCompletionRequest, pb.ChatCompletionResponse)
CHAT_COMPLETION_STREAM = Method(
    "ChatCompletionStream",
    pb.ChatCompletionRequest,
    pb.ChatCompletionChunkResponse,
    server_streaming=True,
)
WEB_RETRIEVAL = Method("WebRetrieval", pb.WebRetrievalRequest, pb.WebRetrievalResponse)
SUBMIT_DEEP_RESEARCHER_JOB = Method(
    "SubmitDeepResearcherJob", pb.ChatCompletionRequest, pb.SubmitDeepResearcherJobResponse
)
GET_DEEP_RESEARCHER_JOB = Method(
    "GetDeepResearcherJob", pb.GetDeepResearcherJobRequest, pb.GetDeepResearcherJobResponse
)
GET_CHAT_SESSIONS = Method("GetChatSessions", pb.GetChatSessionsRequest, pb.GetChatSessionsResponse)
GET_STORED_CHAT_COMPLETIONS = Method(
    "GetStoredChatCompletions",
    pb.GetStoredChatCompletionsRequest,
    pb.GetStoredChatCompletionsResponse,
)
GET_CHAT_COMPLETION = Method(
    "GetChatCompletion", pb.GetChatCompletionRequest, pb.StoredChatCompletion
)
UPDATE_CHAT_ATTRIBUTES = Method(
    "UpdateChatAttributes", pb.UpdateChatAttributesRequest, pb.UpdateChatAttributesResponse
)
DELETE_CHATS = Method("DeleteChats", pb.DeleteChatsRequest, pb.DeleteChatsResponse)
CREATE_CHAT_AND_COMPLETION = Method(
    "CreateChatAndCompletion",
    pb.CreateChatAndCompletionRequest,
    pb.CreateChatAndCompletionResponse,
)
CREATE_COMPLETION = Method(
    "CreateCompletion", pb.CreateCompletionRequest, pb.CreateCompletionResponse
)
DELETE_COMPLETIONS = Method(
    "DeleteCompletions", pb.DeleteCompletionsRequest, pb.DeleteCompletionsResponse
)
SEARCH_CHAT_IDS = Method(
    "SearchChatIdsByPromptAndCompletionText",
    pb.SearchChatIdsByPromptAndCompletionTextRequest,
    pb.SearchChatIdsByPromptAndCompletionTextResponse,
)
UPDATE_COMPLETION_ATTRIBUTES = Method(
    "UpdateCompletionAttributes",
    pb.UpdateCompletionAttributesRequest,
    pb.UpdateCompletionAttributesResponse,
)
GET_COMPLETIONS_WITH_DEEP_RESEARCHER_ENTRY = Method(
    "GetCompletionsWithDeepResearcherEntry",
    empty_pb2.Empty,
    pb.GetCompletionsWithDeepResearcherEntryResponse,
)

ALL_METHODS: tuple[Method[Message, Message], ...] = (
    CHAT_COMPLETION,
    CHAT_COMPLETION_STREAM,
    WEB_RETRIEVAL,
    SUBMIT_DEEP_RESEARCHER_JOB,
    GET_DEEP_RESEARCHER_JOB,
    GET_CHAT_SESSIONS,
    GET_STORED_CHAT_COMPLETIONS,
    GET_CHAT_COMPLETION,
    UPDATE_CHAT_ATTRIBUTES,
    DELETE_CHATS,
    CREATE_CHAT_AND_COMPLETION,
    CREATE_COMPLETION,
    DELETE_COMPLETIONS,
    SEARCH_CHAT_IDS,
    UPDATE_COMPLETION_ATTRIBUTES,
    GET_COMPLETIONS_WITH_DEEP_RESEARCHER_ENTRY,
)  # type: ignore[assignment]
