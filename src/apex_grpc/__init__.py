"""apex-grpc: the typed, fast gRPC SDK for apex.v1, the API of Apex.

Macrocosmos' official SDK removed Apex in macrocosmos 3.0.0 (November 2025);
`apex-grpc serve` (the server extra) hosts the contract.

import apex_grpc as mc

client = mc.ApexClient(api_key="...")
response = client.chat.completions.create(
    messages=[{"role": "user", "content": "Hello"}],
)
print(response.choices[0].message.content)
"""

from typing import TYPE_CHECKING, Any

from apex_grpc._client import ApexClient, ClientOptions
from apex_grpc._errors import (
    AbortedError,
    AlreadyExistsError,
    ApexError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    DataLossError,
    DeadlineExceededError,
    DeepResearchJobError,
    DeepResearchTimeoutError,
    FailedPreconditionError,
    ForkError,
    InsecureTransportError,
    InternalServerError,
    InvalidArgumentError,
    MessageTooLargeError,
    MissingAPIKeyError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitError,
    RequestCancelledError,
    StreamInterruptedError,
    StreamTimeoutError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    ValidationError,
    error_class_for,
)
from apex_grpc._requests.chat import ChatCompletionParams, MessageParam, SamplingParams
from apex_grpc._research import JobProgress, PollOptions, PollPolicy, chunk_text
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings.call import CallInfo, CallOptions, StreamOptions, WriteOptions
from apex_grpc._settings.checks import NOT_GIVEN, NotGiven
from apex_grpc._settings.client import ClientSettings
from apex_grpc._settings.configs import KeepAliveConfig, Secret, TLSConfig
from apex_grpc._streaming.sync import ChatCompletionStream
from apex_grpc._types import *  # noqa: F403  (the message classes, listed in _types.__all__)
from apex_grpc._types import __all__ as _message_names
from apex_grpc._version import __version__

if TYPE_CHECKING:
    from apex_grpc._async_client import AsyncApexClient
    from apex_grpc._streaming.aio import AsyncChatCompletionStream

# The aio client loads on first use, so sync-only programs never import it.
_LAZY = {
    "AsyncApexClient": "apex_grpc._async_client",
    "AsyncChatCompletionStream": "apex_grpc._streaming.aio",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'apex_grpc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # sorted; tests/client/test_exported_members.py checks it is complete
    "APIError",
    "AbortedError",
    "AlreadyExistsError",
    "ApexClient",
    "ApexError",
    "AsyncApexClient",
    "AsyncChatCompletionStream",
    "AuthenticationError",
    "CallInfo",
    "CallOptions",
    "ChatCompletionParams",
    "ChatCompletionStream",
    "ClientClosedError",
    "ClientOptions",
    "ClientSettings",
    "ConfigurationError",
    "DataLossError",
    "DeadlineExceededError",
    "DeepResearchJobError",
    "DeepResearchTimeoutError",
    "FailedPreconditionError",
    "ForkError",
    "InsecureTransportError",
    "InternalServerError",
    "InvalidArgumentError",
    "JobProgress",
    "KeepAliveConfig",
    "MessageParam",
    "MessageTooLargeError",
    "MissingAPIKeyError",
    "NOT_GIVEN",
    "NotFoundError",
    "NotGiven",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PollOptions",
    "PollPolicy",
    "RateLimitError",
    "RequestCancelledError",
    "RetryPolicy",
    "SamplingParams",
    "Secret",
    "StreamInterruptedError",
    "StreamOptions",
    "StreamTimeoutError",
    "TLSConfig",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "ValidationError",
    "WriteOptions",
    "__version__",
    "chunk_text",
    "error_class_for",
    *_message_names,
]
__all__.sort()  # the message names join the sorted literal: one sorted list at run time
