"""What a call's span and metrics say, by the OpenTelemetry GenAI conventions (pure, no OTel).

The conventions' attribute names are spelled here once. Each RPC gets an
operation name: ``chat`` for chat completions (streamed or not),
``retrieval`` for web search, and ``apex.`` + the RPC's name in snake case
for the rest (``apex.submit_deep_researcher_job``, ``apex.get_chat_sessions``,
...), as the conventions allow for operations they do not list.
"""

from __future__ import annotations

import json
import re
from typing import Any

from apex_grpc._methods import Method
from apex_grpc._settings.target import split_host_port
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

PROVIDER = "apex"
"""gen_ai.provider.name of every call (the conventions' value for a provider they do not list)."""

OPERATION = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
CONVERSATION_ID = "gen_ai.conversation.id"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
STREAM = "gen_ai.request.stream"
"""In the conventions' registry (opentelemetry-semantic-conventions 0.66b2), now kept by the
GenAI conventions' own repository."""

CHAT = "chat"
RETRIEVAL = "retrieval"
_CHAT_METHODS = frozenset({"ChatCompletion", "ChatCompletionStream"})


def operation_name(method: Method[Any, Any]) -> str:
    """The gen_ai.operation.name of a call of `method`."""
    if method.name in _CHAT_METHODS:
        return CHAT
    if method.name == "WebRetrieval":
        return RETRIEVAL
    return "apex." + re.sub(r"(?<!^)(?=[A-Z])", "_", method.name).lower()


def span_name(operation: str, model: str) -> str:
    """``chat {model}`` (``chat`` while no model is known); other operations: their name."""
    return f"{operation} {model}" if operation == CHAT and model else operation


def server_attributes(target: str) -> dict[str, Any]:
    """server.address / server.port of a ``host:port`` target (none for other gRPC URIs)."""
    if "://" in target or target.startswith(("unix:", "ipv4:", "ipv6:", "dns:")):
        return {}
    host, port = split_host_port(target)
    return {SERVER_ADDRESS: host} if port is None else {SERVER_ADDRESS: host, SERVER_PORT: port}


def request_attributes(request: Any, stream: bool) -> dict[str, Any]:
    """The request's attributes: its model and sampling parameters, a chat's id."""
    attributes: dict[str, Any] = {}
    if isinstance(request, pb.ChatCompletionRequest):
        attributes[STREAM] = stream
        if request.HasField("model"):
            attributes[REQUEST_MODEL] = request.model
        if request.HasField("seed"):
            attributes["gen_ai.request.seed"] = request.seed
        if request.HasField("sampling_parameters"):
            sampling = request.sampling_parameters
            attributes["gen_ai.request.temperature"] = sampling.temperature
            attributes["gen_ai.request.top_p"] = sampling.top_p
            if sampling.HasField("top_k"):
                attributes["gen_ai.request.top_k"] = sampling.top_k
            if sampling.max_new_tokens:
                attributes["gen_ai.request.max_tokens"] = sampling.max_new_tokens
    chat_id = getattr(request, "chat_id", "")
    if chat_id:
        attributes[CONVERSATION_ID] = chat_id
    job_id = getattr(request, "job_id", "")
    if job_id:
        attributes["apex.deep_research.job_id"] = job_id
    return attributes


def response_attributes(response: Any) -> dict[str, Any]:
    """The response's attributes: its id, model, finish reasons, token usage, chat id."""
    attributes: dict[str, Any] = {}
    if isinstance(response, pb.ChatCompletionResponse):
        if response.id:
            attributes[RESPONSE_ID] = response.id
        if response.model:
            attributes[RESPONSE_MODEL] = response.model
        reasons = [choice.finish_reason for choice in response.choices if choice.finish_reason]
        if reasons:
            attributes[FINISH_REASONS] = reasons
        if response.HasField("usage"):
            attributes[INPUT_TOKENS] = response.usage.prompt_tokens
            attributes[OUTPUT_TOKENS] = response.usage.completion_tokens
    elif isinstance(response, pb.SubmitDeepResearcherJobResponse):
        attributes["apex.deep_research.job_id"] = response.job_id
    elif isinstance(response, pb.CreateChatAndCompletionResponse):
        attributes[CONVERSATION_ID] = response.parsed_chat.id
    elif isinstance(response, pb.StoredChatCompletion) and response.chat_id:
        attributes[CONVERSATION_ID] = response.chat_id
    return attributes


def input_messages(request: Any) -> str | None:
    """The prompt as the conventions' gen_ai.input.messages JSON (None: the call has none)."""
    if isinstance(request, pb.ChatCompletionRequest):
        messages = [_message(m.role, m.content) for m in request.messages]
    elif isinstance(request, pb.WebRetrievalRequest):
        messages = [_message("user", request.search_query)]
    elif isinstance(request, pb.CreateChatAndCompletionRequest | pb.CreateCompletionRequest):
        messages = [_message("user", request.user_prompt)]
    else:
        return None
    return json.dumps(messages, ensure_ascii=False)


def output_messages(response: Any) -> str | None:
    """The answer as the conventions' gen_ai.output.messages JSON (None: the call has none)."""
    if not isinstance(response, pb.ChatCompletionResponse):
        return None
    messages = [
        {**_message("assistant", choice.message.content), "finish_reason": choice.finish_reason}
        for choice in response.choices
    ]
    return json.dumps(messages, ensure_ascii=False)


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}
