"""Stored-chat requests: ``client.chats`` (sessions, stored completions, search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import empty_pb2, struct_pb2

from apex_grpc import _methods as m
from apex_grpc._errors import ValidationError
from apex_grpc._requests import Prepared
from apex_grpc._requests import validate as v
from apex_grpc._settings.call import GivenOptions
from apex_grpc._settings.client import ClientSettings
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


def list_sessions(
    settings: ClientSettings, options: GivenOptions, chat_type: str = ""
) -> Prepared[pb.GetChatSessionsRequest, pb.GetChatSessionsResponse]:
    """List your chats, optionally only those of one `chat_type` (e.g. "apex")."""
    try:
        request = pb.GetChatSessionsRequest(chat_type=v.text(chat_type, "chat_type"))
    except ValueError as error:
        raise v.unencodable(error, {"chat_type": chat_type}) from None
    return Prepared(m.GET_CHAT_SESSIONS, request, settings.for_call(options))


def list_completions(
    settings: ClientSettings, options: GivenOptions, chat_id: str
) -> Prepared[pb.GetStoredChatCompletionsRequest, pb.GetStoredChatCompletionsResponse]:
    """List the stored completions of one of your chats."""
    try:
        request = pb.GetStoredChatCompletionsRequest(chat_id=v.required_text(chat_id, "chat_id"))
    except ValueError as error:
        raise v.unencodable(error, {"chat_id": chat_id}) from None
    return Prepared(m.GET_STORED_CHAT_COMPLETIONS, request, settings.for_call(options))


def get_completion(
    settings: ClientSettings, options: GivenOptions, completion_id: str
) -> Prepared[pb.GetChatCompletionRequest, pb.StoredChatCompletion]:
    """Fetch one stored completion by id."""
    try:
        request = pb.GetChatCompletionRequest(
            completion_id=v.required_text(completion_id, "completion_id")
        )
    except ValueError as error:
        raise v.unencodable(error, {"completion_id": completion_id}) from None
    return Prepared(m.GET_CHAT_COMPLETION, request, settings.for_call(options))


def update_chat(
    settings: ClientSettings, options: GivenOptions, chat_id: str, attributes: Mapping[str, str]
) -> Prepared[pb.UpdateChatAttributesRequest, pb.UpdateChatAttributesResponse]:
    """Change attributes of a chat (e.g. ``{"title": "..."}``); returns the chat."""
    if not isinstance(attributes, Mapping) or not attributes:
        raise ValidationError("attributes", "must be a non-empty dict of strings")
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValidationError(f"attributes[{key!r}]", "keys and values must be strings")
    try:
        request = pb.UpdateChatAttributesRequest(
            chat_id=v.required_text(chat_id, "chat_id"), attributes=dict(attributes)
        )
    except ValueError as error:
        raise v.unencodable(error, {"chat_id": chat_id, "attributes": attributes}) from None
    return Prepared(m.UPDATE_CHAT_ATTRIBUTES, request, settings.for_call(options))


def delete_chats(
    settings: ClientSettings, options: GivenOptions, chat_ids: str | Sequence[str]
) -> Prepared[pb.DeleteChatsRequest, pb.DeleteChatsResponse]:
    """Delete chats (one id or a list), with their completions."""
    try:
        request = pb.DeleteChatsRequest(chat_ids=v.ids(chat_ids, "chat_ids"))
    except ValueError as error:
        raise v.unencodable(error, {"chat_ids": chat_ids}) from None
    return Prepared(m.DELETE_CHATS, request, settings.for_call(options))


def create_chat(
    settings: ClientSettings,
    options: GivenOptions,
    user_prompt: str,
    *,
    chat_type: str = "apex",
    completion_type: str = "basic",
    title: str | None = None,
) -> Prepared[pb.CreateChatAndCompletionRequest, pb.CreateChatAndCompletionResponse]:
    """Start a chat with its first prompt; returns the chat and its completion."""
    try:
        request = pb.CreateChatAndCompletionRequest(
            user_prompt=v.required_text(user_prompt, "user_prompt"),
            chat_type=v.text(chat_type, "chat_type"),
            completion_type=v.text(completion_type, "completion_type"),
        )
        if title is not None:
            request.title = v.text(title, "title")
    except ValueError as error:
        texts = {
            "user_prompt": user_prompt,
            "chat_type": chat_type,
            "completion_type": completion_type,
            "title": title,
        }
        raise v.unencodable(error, texts) from None
    return Prepared(m.CREATE_CHAT_AND_COMPLETION, request, settings.for_call(options))


def create_completion(
    settings: ClientSettings,
    options: GivenOptions,
    chat_id: str,
    user_prompt: str,
    *,
    completion_type: str = "basic",
) -> Prepared[pb.CreateCompletionRequest, pb.CreateCompletionResponse]:
    """Add a prompt (and its completion) to one of your chats."""
    try:
        request = pb.CreateCompletionRequest(
            chat_id=v.required_text(chat_id, "chat_id"),
            user_prompt=v.required_text(user_prompt, "user_prompt"),
            completion_type=v.text(completion_type, "completion_type"),
        )
    except ValueError as error:
        texts = {
            "chat_id": chat_id,
            "user_prompt": user_prompt,
            "completion_type": completion_type,
        }
        raise v.unencodable(error, texts) from None
    return Prepared(m.CREATE_COMPLETION, request, settings.for_call(options))


def delete_completions(
    settings: ClientSettings, options: GivenOptions, completion_ids: str | Sequence[str]
) -> Prepared[pb.DeleteCompletionsRequest, pb.DeleteCompletionsResponse]:
    """Delete stored completions (one id or a list)."""
    try:
        request = pb.DeleteCompletionsRequest(
            completion_ids=v.ids(completion_ids, "completion_ids")
        )
    except ValueError as error:
        raise v.unencodable(error, {"completion_ids": completion_ids}) from None
    return Prepared(m.DELETE_COMPLETIONS, request, settings.for_call(options))


def search_chats(
    settings: ClientSettings, options: GivenOptions, search_term: str
) -> Prepared[
    pb.SearchChatIdsByPromptAndCompletionTextRequest,
    pb.SearchChatIdsByPromptAndCompletionTextResponse,
]:
    """Ids of your chats whose prompts or answers match `search_term`."""
    try:
        request = pb.SearchChatIdsByPromptAndCompletionTextRequest(
            search_term=v.required_text(search_term, "search_term")
        )
    except ValueError as error:
        raise v.unencodable(error, {"search_term": search_term}) from None
    return Prepared(
        m.SEARCH_CHAT_IDS_BY_PROMPT_AND_COMPLETION_TEXT, request, settings.for_call(options)
    )


def update_completion(
    settings: ClientSettings,
    options: GivenOptions,
    completion_id: str,
    *,
    completion_text: str | None = None,
    user_prompt_text: str | None = None,
    completion_metadata: Mapping[str, Any] | None = None,
) -> Prepared[pb.UpdateCompletionAttributesRequest, pb.UpdateCompletionAttributesResponse]:
    """Change a stored completion's text, prompt or metadata.

    completion_metadata: a JSON-like dict merged into the stored metadata
    (the request's `metadata` field; `metadata=` is the call's gRPC metadata).
    """
    if completion_text is None and user_prompt_text is None and completion_metadata is None:
        raise ValidationError(
            "completion_id",
            "nothing to update: give completion_text, user_prompt_text or completion_metadata",
        )
    try:
        request = pb.UpdateCompletionAttributesRequest(
            completion_id=v.required_text(completion_id, "completion_id")
        )
        if completion_text is not None:
            request.completion_text = v.text(completion_text, "completion_text")
        if user_prompt_text is not None:
            request.user_prompt_text = v.text(user_prompt_text, "user_prompt_text")
    except ValueError as error:
        texts = {
            "completion_id": completion_id,
            "completion_text": completion_text,
            "user_prompt_text": user_prompt_text,
        }
        raise v.unencodable(error, texts) from None
    if completion_metadata is not None:
        request.metadata.CopyFrom(_struct(completion_metadata, "completion_metadata"))
    return Prepared(m.UPDATE_COMPLETION_ATTRIBUTES, request, settings.for_call(options))


def list_deep_research_completions(
    settings: ClientSettings, options: GivenOptions
) -> Prepared[empty_pb2.Empty, pb.GetCompletionsWithDeepResearcherEntryResponse]:
    """Your stored completions that carry deep-research metadata."""
    return Prepared(
        m.GET_COMPLETIONS_WITH_DEEP_RESEARCHER_ENTRY, empty_pb2.Empty(), settings.for_call(options)
    )


# Validation helpers


def _struct(value: object, argument: str) -> struct_pb2.Struct:
    if not isinstance(value, Mapping):
        raise ValidationError(argument, f"must be a dict, got {type(value).__name__}")
    result = struct_pb2.Struct()
    try:
        result.update(value)
    except ValueError as error:
        found = v.unencodable(error, {argument: value})
        if found is not error:
            raise found from None
        raise ValidationError(
            argument, f"must be JSON-like (str/number/bool/None/list/dict): {error}"
        ) from None
    except (TypeError, AttributeError) as error:
        raise ValidationError(
            argument, f"must be JSON-like (str/number/bool/None/list/dict): {error}"
        ) from None
    return result
