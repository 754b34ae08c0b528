"""The unary operations, each defined once as a pure function returning a `Call`.

The sync and async resources expose these through `sync_unary` /
`async_unary` (see `_resources.py`), which keep the signature and docstring:
the parameter list of each method is written here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from google.protobuf import empty_pb2, struct_pb2

from apex_grpc import _methods as m
from apex_grpc import _validate as v
from apex_grpc._call import Call, CallOptions, resolve_options
from apex_grpc._chat_params import (
    DEEP_RESEARCH_SAMPLING_DEFAULTS,
    ChatRequestFields,
    MessageParam,
    prepare_chat,
)
from apex_grpc._errors import ValidationError
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

WEB_SEARCH_DEFAULTS = {"n_miners": 5, "n_results": 5, "max_response_time": 30}
WEB_SEARCH_DEADLINE_MARGIN = 10.0
"""Seconds added to max_response_time for the default deadline of a web search."""

DEEP_RESEARCH_FIXED = {
    "task": "InferenceTask",
    "inference_mode": "Chain-of-Thought",
    "mixture": False,
}


# Web search


def web_search(
    search_query: str,
    *,
    n_results: int | None = None,
    max_response_time: float | None = None,
    n_miners: int | None = None,
    uids: Sequence[int] | None = None,
    max_results_per_miner: int | None = None,
    **options: Unpack[CallOptions],
) -> Call[pb.WebRetrievalRequest, pb.WebRetrievalResponse]:
    """Search the web through subnet miners.

    search_query: what to look for (required, non-empty).
    n_results: how many results to return (default 5);
        `max_results_per_miner` is the official SDK's name for it.
    max_response_time: seconds miners may take (default 30). Unless a timeout
        is set on the call or the client, the call's deadline is this plus
        10 seconds.
    n_miners: how many miners to ask (default 5).
    uids: specific miner UIDs to ask (default: the validator chooses).
    """
    if None not in (n_results, max_results_per_miner) and n_results != max_results_per_miner:
        raise ValidationError("max_results_per_miner", "is an alias of n_results; give one of them")
    if n_results is None:
        n_results = max_results_per_miner
    request = pb.WebRetrievalRequest(
        search_query=v.required_text(search_query, "search_query"),
        n_results=v.integer(_or(n_results, "n_results"), "n_results", minimum=1),
        n_miners=v.integer(_or(n_miners, "n_miners"), "n_miners", minimum=1),
        max_response_time=_whole_seconds(_or(max_response_time, "max_response_time")),
    )
    if uids:
        request.uids.extend(v.uids(uids))
    resolved = resolve_options(options)
    if resolved.timeout_given and resolved.timeout is not None:
        request.timeout = max(1, math.ceil(resolved.timeout))
    return Call(
        m.WEB_RETRIEVAL,
        request,
        resolved,
        default_timeout=request.max_response_time + WEB_SEARCH_DEADLINE_MARGIN,
    )


# Deep research


def submit_deep_research(
    messages: Sequence[MessageParam | pb.ChatMessage],
    **params: Unpack[_DeepResearchParams],
) -> Call[pb.ChatCompletionRequest, pb.SubmitDeepResearcherJobResponse]:
    """Start a deep-research job; returns its id and status at once.

    Takes the chat-completion keywords (messages, sampling_parameters, seed,
    model, uids, ...) with the official SDK's deep-research defaults: task
    "InferenceTask", inference_mode "Chain-of-Thought", mixture False,
    max_new_tokens 8192, do_sample False.
    """
    prepared = prepare_chat(
        {"messages": messages, **params},
        stream=True,
        sampling_defaults=DEEP_RESEARCH_SAMPLING_DEFAULTS,
        fixed=DEEP_RESEARCH_FIXED,
    )
    return Call(m.SUBMIT_DEEP_RESEARCHER_JOB, prepared.request, prepared.options)


def get_deep_research(
    job_id: str, **options: Unpack[CallOptions]
) -> Call[pb.GetDeepResearcherJobRequest, pb.GetDeepResearcherJobResponse]:
    """Fetch a deep-research job: its status and the result chunks so far."""
    request = pb.GetDeepResearcherJobRequest(job_id=v.required_text(job_id, "job_id"))
    return Call(m.GET_DEEP_RESEARCHER_JOB, request, resolve_options(options))


class _DeepResearchParams(ChatRequestFields, CallOptions, total=False):
    pass


# Chat sessions and stored completions


def list_sessions(
    chat_type: str = "", **options: Unpack[CallOptions]
) -> Call[pb.GetChatSessionsRequest, pb.GetChatSessionsResponse]:
    """List your chats, optionally only those of one `chat_type` (e.g. "apex")."""
    request = pb.GetChatSessionsRequest(chat_type=v.text(chat_type, "chat_type"))
    return Call(m.GET_CHAT_SESSIONS, request, resolve_options(options))


def list_completions(
    chat_id: str, **options: Unpack[CallOptions]
) -> Call[pb.GetStoredChatCompletionsRequest, pb.GetStoredChatCompletionsResponse]:
    """List the stored completions of one of your chats."""
    request = pb.GetStoredChatCompletionsRequest(chat_id=v.required_text(chat_id, "chat_id"))
    return Call(m.GET_STORED_CHAT_COMPLETIONS, request, resolve_options(options))


def get_completion(
    completion_id: str, **options: Unpack[CallOptions]
) -> Call[pb.GetChatCompletionRequest, pb.StoredChatCompletion]:
    """Fetch one stored completion by id."""
    request = pb.GetChatCompletionRequest(
        completion_id=v.required_text(completion_id, "completion_id")
    )
    return Call(m.GET_CHAT_COMPLETION, request, resolve_options(options))


def update_chat(
    chat_id: str, attributes: Mapping[str, str], **options: Unpack[CallOptions]
) -> Call[pb.UpdateChatAttributesRequest, pb.UpdateChatAttributesResponse]:
    """Change attributes of a chat (e.g. ``{"title": "..."}``); returns the chat."""
    if not isinstance(attributes, Mapping) or not attributes:
        raise ValidationError("attributes", "must be a non-empty dict of strings")
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValidationError(f"attributes[{key!r}]", "keys and values must be strings")
    request = pb.UpdateChatAttributesRequest(
        chat_id=v.required_text(chat_id, "chat_id"), attributes=dict(attributes)
    )
    return Call(m.UPDATE_CHAT_ATTRIBUTES, request, resolve_options(options))


def delete_chats(
    chat_ids: str | Sequence[str], **options: Unpack[CallOptions]
) -> Call[pb.DeleteChatsRequest, pb.DeleteChatsResponse]:
    """Delete chats (one id or a list), with their completions."""
    request = pb.DeleteChatsRequest(chat_ids=v.ids(chat_ids, "chat_ids"))
    return Call(m.DELETE_CHATS, request, resolve_options(options))


def create_chat(
    user_prompt: str,
    *,
    chat_type: str = "apex",
    completion_type: str = "basic",
    title: str | None = None,
    **options: Unpack[CallOptions],
) -> Call[pb.CreateChatAndCompletionRequest, pb.CreateChatAndCompletionResponse]:
    """Start a chat with its first prompt; returns the chat and its completion."""
    request = pb.CreateChatAndCompletionRequest(
        user_prompt=v.required_text(user_prompt, "user_prompt"),
        chat_type=v.text(chat_type, "chat_type"),
        completion_type=v.text(completion_type, "completion_type"),
    )
    if title is not None:
        request.title = v.text(title, "title")
    return Call(m.CREATE_CHAT_AND_COMPLETION, request, resolve_options(options))


def create_completion(
    chat_id: str,
    user_prompt: str,
    *,
    completion_type: str = "basic",
    **options: Unpack[CallOptions],
) -> Call[pb.CreateCompletionRequest, pb.CreateCompletionResponse]:
    """Add a prompt (and its completion) to one of your chats."""
    request = pb.CreateCompletionRequest(
        chat_id=v.required_text(chat_id, "chat_id"),
        user_prompt=v.required_text(user_prompt, "user_prompt"),
        completion_type=v.text(completion_type, "completion_type"),
    )
    return Call(m.CREATE_COMPLETION, request, resolve_options(options))


def delete_completions(
    completion_ids: str | Sequence[str], **options: Unpack[CallOptions]
) -> Call[pb.DeleteCompletionsRequest, pb.DeleteCompletionsResponse]:
    """Delete stored completions (one id or a list)."""
    request = pb.DeleteCompletionsRequest(completion_ids=v.ids(completion_ids, "completion_ids"))
    return Call(m.DELETE_COMPLETIONS, request, resolve_options(options))


def search_chats(
    search_term: str, **options: Unpack[CallOptions]
) -> Call[
    pb.SearchChatIdsByPromptAndCompletionTextRequest,
    pb.SearchChatIdsByPromptAndCompletionTextResponse,
]:
    """Ids of your chats whose prompts or answers match `search_term`."""
    request = pb.SearchChatIdsByPromptAndCompletionTextRequest(
        search_term=v.required_text(search_term, "search_term")
    )
    return Call(m.SEARCH_CHAT_IDS_BY_PROMPT_AND_COMPLETION_TEXT, request, resolve_options(options))


def update_completion(
    completion_id: str,
    *,
    completion_text: str | None = None,
    user_prompt_text: str | None = None,
    completion_metadata: Mapping[str, Any] | None = None,
    **options: Unpack[CallOptions],
) -> Call[pb.UpdateCompletionAttributesRequest, pb.UpdateCompletionAttributesResponse]:
    """Change a stored completion's text, prompt or metadata.

    completion_metadata: a JSON-like dict merged into the stored metadata
    (the request's `metadata` field; `metadata=` is the call's gRPC metadata).
    """
    if completion_text is None and user_prompt_text is None and completion_metadata is None:
        raise ValidationError(
            "completion_id",
            "nothing to update: give completion_text, user_prompt_text or completion_metadata",
        )
    request = pb.UpdateCompletionAttributesRequest(
        completion_id=v.required_text(completion_id, "completion_id")
    )
    if completion_text is not None:
        request.completion_text = v.text(completion_text, "completion_text")
    if user_prompt_text is not None:
        request.user_prompt_text = v.text(user_prompt_text, "user_prompt_text")
    if completion_metadata is not None:
        request.metadata.CopyFrom(_struct(completion_metadata, "completion_metadata"))
    return Call(m.UPDATE_COMPLETION_ATTRIBUTES, request, resolve_options(options))


def list_deep_research_completions(
    **options: Unpack[CallOptions],
) -> Call[empty_pb2.Empty, pb.GetCompletionsWithDeepResearcherEntryResponse]:
    """Your stored completions that carry deep-research metadata."""
    return Call(
        m.GET_COMPLETIONS_WITH_DEEP_RESEARCHER_ENTRY, empty_pb2.Empty(), resolve_options(options)
    )


# Validation helpers


def _struct(value: object, argument: str) -> struct_pb2.Struct:
    if not isinstance(value, Mapping):
        raise ValidationError(argument, f"must be a dict, got {type(value).__name__}")
    result = struct_pb2.Struct()
    try:
        result.update(value)
    except (ValueError, TypeError, AttributeError) as error:
        raise ValidationError(
            argument, f"must be JSON-like (str/number/bool/None/list/dict): {error}"
        ) from None
    return result


def _or(value: object, name: str) -> object:
    return WEB_SEARCH_DEFAULTS[name] if value is None else value


def _whole_seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            "max_response_time", f"must be a number of seconds, got {type(value).__name__}"
        )
    if not 0 < value < 2**31:
        raise ValidationError("max_response_time", f"must be > 0 seconds, got {value}")
    return math.ceil(value)
