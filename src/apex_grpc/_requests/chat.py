"""Chat requests: `chat.completions.create` and `deep_research.submit` keywords in, a call out.

Every problem raises a ValidationError naming the argument
(``messages[2].content``, ``sampling_parameters.top_p``, ...) before any I/O.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Required, TypedDict

from apex_grpc import _methods as m
from apex_grpc._errors import ValidationError
from apex_grpc._requests import Prepared
from apex_grpc._requests.validate import flag, integer, number, text, unencodable
from apex_grpc._requests.validate import uids as check_uids
from apex_grpc._settings.call import CallOptions, GivenOptions, StreamOptions
from apex_grpc._settings.checks import NOT_GIVEN
from apex_grpc._settings.client import ClientSettings
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

ROLES = ("system", "user", "assistant")
MAX_SEED = 2**63 - 1
OFFICIAL_SEED_RANGE = (0, 65535)


class MessageParam(TypedDict):
    """A chat message as a dict: ``{"role": "user", "content": "Hi"}``."""

    role: str
    content: str


class SamplingParams(TypedDict, total=False):
    """Sampling parameters as a dict; keys left out take the defaults."""

    temperature: float
    top_p: float
    top_k: float | None
    max_new_tokens: int
    do_sample: bool


CHAT_SAMPLING_DEFAULTS: SamplingParams = {
    "temperature": 0.7,
    "top_p": 0.95,
    "max_new_tokens": 4096,
    "do_sample": True,
}
DEEP_RESEARCH_SAMPLING_DEFAULTS: SamplingParams = {
    "temperature": 0.7,
    "top_p": 0.95,
    "max_new_tokens": 8192,
    "do_sample": False,
}


class ChatRequestFields(TypedDict, total=False):
    """The ChatCompletionRequest fields other than messages, as keyword arguments.

    sampling_parameters: dict (merged over the defaults: temperature 0.7,
        top_p 0.95, max_new_tokens 4096, do_sample True) or SamplingParameters
        (used as given).
    seed: sampling seed; None draws one in [0, 65535] as the official SDK (2.1.0) does,
        or, for a write given its own ``idempotency_key``, derives it from the key.
    model, task, inference_mode: names passed to the server (None: its default).
    uids: miner UIDs to ask (None or empty: the validator chooses).
    test_time_inference, mixture, json_format: booleans passed through.
    """

    sampling_parameters: SamplingParams | pb.SamplingParameters | None
    seed: int | None
    model: str | None
    task: str | None
    inference_mode: str | None
    uids: Sequence[int] | None
    test_time_inference: bool | None
    mixture: bool | None
    json_format: bool | None


class ChatRequestParams(ChatRequestFields, total=False):
    """All ChatCompletionRequest fields; messages (dicts or ChatMessage) is required."""

    messages: Required[Sequence[MessageParam | pb.ChatMessage]]


class ChatCompletionParams(ChatRequestParams, CallOptions, StreamOptions, total=False):
    """Keyword arguments of ``chat.completions.create``: the request fields and the options.

    ``timeout`` also tells the server its time budget
    (ChatCompletionRequest.timeout, whole seconds); so does a timeout chosen
    on the client.
    """


ChatCall = Prepared[pb.ChatCompletionRequest, Any]


def prepare_chat(
    settings: ClientSettings,
    options: GivenOptions,
    messages: Sequence[MessageParam | pb.ChatMessage],
    *,
    stream: bool,
    sampling_parameters: SamplingParams | pb.SamplingParameters | None = None,
    seed: int | None = None,
    model: str | None = None,
    task: str | None = None,
    inference_mode: str | None = None,
    uids: Sequence[int] | None = None,
    test_time_inference: bool | None = None,
    mixture: bool | None = None,
    json_format: bool | None = None,
    sampling_defaults: SamplingParams = CHAT_SAMPLING_DEFAULTS,
    stream_options: bool = True,
    method: m.Method[pb.ChatCompletionRequest, Any] | None = None,
) -> ChatCall:
    """Validate the arguments of ``chat.completions.create`` and build the call.

    `options`: the call options given (and, when `stream_options`,
    first_chunk_timeout / idle_timeout); the request fields are
    ChatRequestFields, None meaning "the server's default". `method`: the RPC
    (default: ChatCompletionStream or ChatCompletion, as `stream` says; deep research
    sends its streamed request through the unary SubmitDeepResearcherJob).
    """
    if not isinstance(stream, bool):
        raise ValidationError("stream", f"must be True or False, got {stream!r}")
    if method is None:
        method = m.CHAT_COMPLETION_STREAM if stream else m.CHAT_COMPLETION
    if method.server_streaming and options.get("call_info") is not None:
        raise ValidationError(
            "call_info",
            "is for unary calls; a stream has initial_metadata() and trailing_metadata()",
        )
    # The common call (no options, default sampling) takes the prepared defaults
    # directly: a sequential call pays for every function it enters (see `UnaryAttempts`).
    if options:
        call_settings = settings.for_call(options, stream_options=stream_options)
    else:
        call_settings = settings.call_defaults
    if sampling_parameters is None and sampling_defaults is CHAT_SAMPLING_DEFAULTS:
        sampling = DEFAULT_SAMPLING
    else:
        sampling = build_sampling(sampling_parameters, sampling_defaults)
    conversation = build_messages(messages)
    if seed is not None:
        seed = integer(seed, "seed", minimum=0, maximum=MAX_SEED)
    elif call_settings.idempotency_key is not None:
        seed = seed_of_key(call_settings.idempotency_key)
    else:
        seed = random.getrandbits(16)  # [0, 65535], as the official SDK draws it, 30x faster
    try:  # free unless it raises: text protobuf cannot encode is looked for only then
        request = pb.ChatCompletionRequest(
            # protobuf's constructors take a dict for a message (its stubs say only messages).
            messages=conversation,  # type: ignore[arg-type]
            sampling_parameters=sampling,
            seed=seed,
            stream=stream,
        )
        if model is not None:
            request.model = text(model, "model")
        if task is not None:
            request.task = text(task, "task")
        if inference_mode is not None:
            request.inference_mode = text(inference_mode, "inference_mode")
    except ValueError as error:
        texts: dict[str, object] = {
            f"messages[{index}].content": message["content"]
            for index, message in enumerate(conversation)
            if isinstance(message, dict)
        }
        texts.update(model=model, task=task, inference_mode=inference_mode)
        raise unencodable(error, texts) from None
    if uids is not None:
        request.uids.extend(check_uids(uids))
    if test_time_inference is not None:
        request.test_time_inference = flag(test_time_inference, "test_time_inference")
    if mixture is not None:
        request.mixture = flag(mixture, "mixture")
    if json_format is not None:
        request.json_format = flag(json_format, "json_format")
    # The server's budget: a timeout chosen for the call or on the client, not a default.
    budget = options.get("timeout", settings.timeout)
    if budget is not NOT_GIVEN and budget is not None:
        request.timeout = max(1, math.ceil(call_settings.timeout or 0))
    return Prepared(method, request, call_settings)


CONTINUE_HEADER = "x-apex-continue"
"""Request metadata asking the server to continue the final assistant message (value "1");
a server that does so says it with the same entry in its initial metadata."""


_CONTINUE_ENTRY = ((CONTINUE_HEADER, "1"),)


def continuation(prepared: ChatCall, answered: str, remaining: float | None) -> ChatCall:
    """The request that continues a streamed answer from the text `answered` so far.

    The original request with an assistant message holding `answered` at the end of its
    conversation, and ``x-apex-continue: 1`` in its metadata: the server streams only what
    follows. `remaining`: seconds left of the call's deadline, the server's new budget
    when the original request gave one. Built from the original each time, so a second
    resume carries one prefix, not two.
    """
    request = pb.ChatCompletionRequest()
    request.CopyFrom(prepared.request)
    request.messages.add(role="assistant", content=answered)
    if request.HasField("timeout") and remaining is not None:
        request.timeout = max(1, math.ceil(remaining))
    settings = prepared.settings
    metadata = settings.metadata + _CONTINUE_ENTRY  # still RedactedMetadata
    return Prepared(prepared.method, request, settings._replace(metadata=metadata))


def seed_of_key(key: str) -> int:
    """The seed of a call given its own idempotency key and no seed: drawn from the key
    (CRC-32's low 16 bits, in the official SDK's [0, 65535]), so a repeat of the call
    is the same request and the server replays the first answer instead of refusing
    a different request under a used key."""
    return zlib.crc32(key.encode()) & 0xFFFF


_sampling_cache: dict[tuple[tuple[str, object], ...], pb.SamplingParameters] = {}


def build_messages(messages: object) -> list[pb.ChatMessage | dict[str, str]]:
    """Validate the conversation; returns its messages as ChatMessage objects or dicts
    with exactly ``role`` and ``content``, which protobuf's constructor takes as they are
    (a dict the caller passed is not copied: building a ChatMessage for it first costs a
    sequential call about 5 µs)."""
    if type(messages) is not list and (
        isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence)
    ):
        raise ValidationError(
            "messages", f"must be a list of messages, got {type(messages).__name__}"
        )
    if not messages:
        raise ValidationError("messages", "must not be empty")
    result: list[pb.ChatMessage | dict[str, str]] = []
    for index, message in enumerate(messages):
        if type(message) is dict and len(message) == 2 and "role" in message:
            role, content = message["role"], message.get("content")  # the common case, fast
            if "content" not in message:
                raise ValidationError(f"messages[{index}]", "missing 'content'")
            entry: pb.ChatMessage | dict[str, str] = message
        elif isinstance(message, pb.ChatMessage):
            role, content = message.role, message.content
            entry = message
        elif isinstance(message, Mapping):
            extra = set(message) - {"role", "content"}
            if extra:
                raise ValidationError(
                    f"messages[{index}]", f"unexpected key {sorted(extra, key=str)[0]!r}"
                )
            if "role" not in message or "content" not in message:
                missing = "role" if "role" not in message else "content"
                raise ValidationError(f"messages[{index}]", f"missing {missing!r}")
            role, content = message["role"], message["content"]
            entry = {"role": role, "content": content}
        else:
            raise ValidationError(
                f"messages[{index}]",
                f"must be a dict or ChatMessage, got {type(message).__name__}",
            )
        if role not in ROLES:
            raise ValidationError(
                f"messages[{index}].role",
                f"unknown role {role!r} (expected one of {', '.join(ROLES)})",
            )
        if not isinstance(content, str):
            raise ValidationError(
                f"messages[{index}].content", f"must be a string, got {type(content).__name__}"
            )
        result.append(entry)
    return result


def build_sampling(value: object, defaults: SamplingParams) -> pb.SamplingParameters:
    """Sampling parameters from None (defaults), a dict (merged over defaults) or a message."""
    if value is None:
        key = tuple(defaults.items())
        cached = _sampling_cache.get(key)
        if cached is None:
            # Built and validated once; protobuf copies it into each request.
            cached = _sampling_cache[key] = build_sampling(dict(defaults), {})
        return cached
    merged: Mapping[str, object]
    if isinstance(value, pb.SamplingParameters):
        merged = {
            "temperature": value.temperature,
            "top_p": value.top_p,
            "max_new_tokens": value.max_new_tokens,
            "do_sample": value.do_sample,
        }
        if value.HasField("top_k"):
            merged["top_k"] = value.top_k
    elif isinstance(value, Mapping):
        unknown = set(value) - set(SamplingParams.__optional_keys__)
        if unknown:
            raise ValidationError(
                f"sampling_parameters.{sorted(unknown, key=str)[0]}", "unknown sampling parameter"
            )
        merged = {**defaults, **value}
    else:
        raise ValidationError(
            "sampling_parameters",
            f"must be a dict or SamplingParameters, got {type(value).__name__}",
        )
    temperature = number(merged.get("temperature", 0.0), "sampling_parameters.temperature")
    if temperature < 0:
        raise ValidationError("sampling_parameters.temperature", f"must be >= 0, got {temperature}")
    top_p = number(merged.get("top_p", 1.0), "sampling_parameters.top_p")
    if not 0 < top_p <= 1:
        raise ValidationError("sampling_parameters.top_p", f"must be in (0, 1], got {top_p}")
    max_new_tokens = integer(
        merged.get("max_new_tokens"), "sampling_parameters.max_new_tokens", minimum=1
    )
    do_sample = flag(merged.get("do_sample", True), "sampling_parameters.do_sample")
    result = pb.SamplingParameters(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, do_sample=do_sample
    )
    top_k = merged.get("top_k")
    if top_k is not None:
        k = number(top_k, "sampling_parameters.top_k")
        if k < 0 or k != int(k):
            raise ValidationError(
                "sampling_parameters.top_k", f"must be a whole number >= 0, got {top_k!r}"
            )
        result.top_k = k
    return result


DEFAULT_SAMPLING = build_sampling(None, CHAT_SAMPLING_DEFAULTS)
"""The sampling parameters of a call that sets none (protobuf copies them into each request)."""
