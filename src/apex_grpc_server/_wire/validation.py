"""Request validation: every check raises INVALID_ARGUMENT with a message naming the field.

Text a store may keep (prompts, messages, titles, chat and completion types,
completion edits, ids and filters) must not hold NUL (``\\x00``): PostgreSQL's
text cannot, and both stores refuse it alike rather than keep it in one and fail
in the other (docs/server.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._engines.base import ChatRequest, Message
from apex_grpc_server._status import invalid_argument, shown

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 1024
MAX_UIDS = 256
MAX_UID = 255
MAX_NAME_CHARS = 256
MAX_ID_CHARS = 128
MAX_TITLE_CHARS = 1024
MAX_QUERY_CHARS = 4096
MAX_SECONDS = 3600
MAX_N_RESULTS = 100
MAX_TOP_K = 1_000_000
DEFAULT_N_RESULTS = 3
DEFAULT_RESPONSE_TIME_S = 20

# What the official SDK sends when the caller gives no sampling parameters.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated chat request and its server-side time budget (None: no budget)."""

    request: ChatRequest
    timeout_s: float | None


@dataclass(frozen=True, slots=True)
class SearchCall:
    """A validated web retrieval."""

    query: str
    n_results: int
    budget_s: float


CONTINUE_KEY = "x-apex-continue"
"""Request metadata "1": continue the final assistant message instead of starting a new turn
(a client resuming a cut stream). A stream that has it gets it back in its initial metadata,
so the client knows the server continues rather than starting the answer over."""


def continuing(metadata: Mapping[str, str | bytes]) -> bool:
    """Whether a call's metadata asks to continue the final assistant message."""
    value = metadata.get(CONTINUE_KEY)
    if value is None:
        return False
    if value not in ("1", b"1"):
        raise invalid_argument(f"{CONTINUE_KEY}: must be 1 when given, got {shown(str(value))}")
    return True


def chat(request: pb.ChatCompletionRequest, *, continue_final: bool = False) -> ChatCall:
    """Validate a ChatCompletionRequest (also used by SubmitDeepResearcherJob).

    Proto3 zero values of plain fields mean "unset": top_p 0 means 1 (no
    nucleus filter) and max_new_tokens 0 the engine's default. max_new_tokens
    is never rejected for being large; engines clamp it. do_sample false means
    greedy decoding (temperature 0). uids, task, inference_mode, mixture,
    test_time_inference and stream are checked but do not change the answer
    (there are no miners here); model is advisory: responses name the model
    that actually answered. With `continue_final` (``x-apex-continue``) the
    last message is the start of the answer: an assistant message after
    at least one other, held to the same limits as any message.
    """
    if not request.messages:
        raise invalid_argument("messages: must not be empty")
    if continue_final and (len(request.messages) < 2 or request.messages[-1].role != "assistant"):
        raise invalid_argument(
            f"messages: {CONTINUE_KEY} continues the answer begun in the final message, which"
            " must be the assistant's, after the conversation it answers"
        )
    if len(request.messages) > MAX_MESSAGES:
        raise invalid_argument(
            f"messages: at most {MAX_MESSAGES} messages, got {len(request.messages)}"
        )
    messages = []
    for index, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise invalid_argument(
                f"messages[{index}].role: unknown role {shown(message.role)}"
                f" (expected {', '.join(ROLES)})"
            )
        if not message.content:
            raise invalid_argument(f"messages[{index}].content: must not be empty")
        _no_nul(f"messages[{index}].content", message.content)
        messages.append(Message(message.role, message.content))
    _uids(request.uids)
    for name in ("task", "model", "inference_mode"):
        if request.HasField(name):
            _max_chars(name, getattr(request, name), MAX_NAME_CHARS)
    timeout_s = None
    if request.HasField("timeout"):
        timeout_s = float(_in_range("timeout", request.timeout, 1, MAX_SECONDS))

    temperature, top_p, top_k, max_new_tokens, do_sample = (
        DEFAULT_TEMPERATURE,
        DEFAULT_TOP_P,
        0,
        None,
        True,
    )
    if request.HasField("sampling_parameters"):
        params = request.sampling_parameters
        temperature = _float_in_range("sampling_parameters.temperature", params.temperature, 0, 2)
        top_p = _float_in_range("sampling_parameters.top_p", params.top_p, 0, 1) or 1.0
        if params.HasField("top_k"):
            value = _float_in_range("sampling_parameters.top_k", params.top_k, 0, MAX_TOP_K)
            if value != int(value):
                raise invalid_argument(
                    f"sampling_parameters.top_k: must be a whole number, got {shown(params.top_k)}"
                )
            top_k = int(value)
        if params.max_new_tokens < 0:
            raise invalid_argument(
                f"sampling_parameters.max_new_tokens: must be >= 0, got {params.max_new_tokens}"
            )
        max_new_tokens = params.max_new_tokens or None
        do_sample = params.do_sample
    return ChatCall(
        ChatRequest(
            messages=tuple(messages),
            temperature=temperature if do_sample else 0.0,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            seed=request.seed if request.HasField("seed") else None,
            do_sample=do_sample,
            json_format=request.json_format,
            model=request.model or None,
            continue_final=continue_final,
        ),
        timeout_s,
    )


def web_retrieval(request: pb.WebRetrievalRequest) -> SearchCall:
    """Validate a WebRetrievalRequest; its budget is min(max_response_time, timeout)."""
    query = request.search_query
    if not query.strip():
        raise invalid_argument("search_query: must not be empty")
    _max_chars("search_query", query, MAX_QUERY_CHARS)
    _uids(request.uids)
    if request.HasField("n_miners"):
        _in_range("n_miners", request.n_miners, 1, MAX_UIDS)
    n_results = DEFAULT_N_RESULTS
    if request.HasField("n_results"):
        n_results = _in_range("n_results", request.n_results, 1, MAX_N_RESULTS)
    budget = DEFAULT_RESPONSE_TIME_S
    if request.HasField("max_response_time"):
        budget = _in_range("max_response_time", request.max_response_time, 1, MAX_SECONDS)
    if request.HasField("timeout"):
        budget = min(budget, _in_range("timeout", request.timeout, 1, MAX_SECONDS))
    return SearchCall(query, n_results, float(budget))


def identifier(field: str, value: str) -> str:
    """A required id: non-empty (an id we never issued is NOT_FOUND later, not here)."""
    if not value:
        raise invalid_argument(f"{field}: must not be empty")
    _max_chars(field, value, MAX_ID_CHARS)
    _no_nul(field, value)
    return value


def identifiers(field: str, values: Sequence[str]) -> list[str]:
    """A required, non-empty list of ids (duplicates removed, order kept)."""
    if not values:
        raise invalid_argument(f"{field}: must not be empty")
    if len(values) > 1000:
        raise invalid_argument(f"{field}: at most 1000 ids, got {len(values)}")
    for index, value in enumerate(values):
        identifier(f"{field}[{index}]", value)
    return list(dict.fromkeys(values))


def prompt(field: str, value: str) -> str:
    """A required prompt text."""
    if not value.strip():
        raise invalid_argument(f"{field}: must not be empty")
    return text(field, value)


def text(field: str, value: str) -> str:
    """A text to store as it is (a completion's text may be empty): no NUL in it."""
    _no_nul(field, value)
    return value


def name(field: str, value: str, default: str) -> str:
    """A short optional name such as chat_type or completion_type."""
    _max_chars(field, value, MAX_NAME_CHARS)
    _no_nul(field, value)
    return value or default


def title(field: str, value: str) -> str:
    """A chat title: not blank, at most MAX_TITLE_CHARS characters."""
    if not value.strip():
        raise invalid_argument(f"{field}: must not be empty")
    _max_chars(field, value, MAX_TITLE_CHARS)
    _no_nul(field, value)
    return value


def search_term(value: str) -> str:
    """SearchChatIdsByPromptAndCompletionText's term."""
    if not value.strip():
        raise invalid_argument("search_term: must not be empty")
    _max_chars("search_term", value, MAX_QUERY_CHARS)
    _no_nul("search_term", value)
    return value


def _uids(uids: Sequence[int]) -> None:
    if len(uids) > MAX_UIDS:
        raise invalid_argument(f"uids: at most {MAX_UIDS} uids, got {len(uids)}")
    for index, uid in enumerate(uids):
        _in_range(f"uids[{index}]", uid, 0, MAX_UID)


def _in_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise invalid_argument(f"{field}: must be in [{low}, {high}], got {value}")
    return value


def _float_in_range(field: str, value: float, low: float, high: float) -> float:
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid_argument(f"{field}: must be in [{low:g}, {high:g}], got {value!r}")
    return value


def _max_chars(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise invalid_argument(f"{field}: must be at most {limit} characters, got {len(value)}")


def _no_nul(field: str, value: str) -> None:
    at = value.find("\x00")
    if at >= 0:
        raise invalid_argument(
            f"{field}: must not contain NUL characters (\\x00), found one at index {at}"
        )
