"""apex-grpc: the typed, fast gRPC SDK for Apex, the decentralized-LLM API of Bittensor subnet 1.

import apex_grpc as mc

client = mc.ApexClient(api_key="...")
response = client.chat.completions.create(
    messages=[{"role": "user", "content": "Hello"}],
)
print(response.choices[0].message.content)
"""

from apex_grpc._async_stream import AsyncChatCompletionStream
from apex_grpc._chat_params import (
    ChatCompletionParams,
    MessageParam,
    SamplingParams,
)
from apex_grpc._client import NOT_GIVEN, ApexClient, AsyncApexClient, ClientOptions
from apex_grpc._config import KeepAliveConfig, TLSConfig
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
    InsecureTransportError,
    InternalServerError,
    InvalidArgumentError,
    MissingAPIKeyError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitError,
    RequestCancelledError,
    StreamTimeoutError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    ValidationError,
    error_class_for,
)
from apex_grpc._research import PollPolicy, chunk_text
from apex_grpc._retry import RetryPolicy
from apex_grpc._stream import ChatCompletionStream
from apex_grpc._types import *  # noqa: F403  (the message classes, listed in _types.__all__)
from apex_grpc._types import __all__ as _message_names
from apex_grpc._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIError",
    "AbortedError",
    "AlreadyExistsError",
    "ApexClient",
    "ApexError",
    "AsyncApexClient",
    "AsyncChatCompletionStream",
    "AuthenticationError",
    "ChatCompletionParams",
    "ChatCompletionStream",
    "ClientClosedError",
    "ClientOptions",
    "ConfigurationError",
    "DataLossError",
    "DeadlineExceededError",
    "DeepResearchJobError",
    "DeepResearchTimeoutError",
    "FailedPreconditionError",
    "InsecureTransportError",
    "InternalServerError",
    "InvalidArgumentError",
    "KeepAliveConfig",
    "MessageParam",
    "MissingAPIKeyError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RequestCancelledError",
    "RetryPolicy",
    "SamplingParams",
    "StreamTimeoutError",
    "TLSConfig",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "ValidationError",
    "__version__",
    "chunk_text",
    "error_class_for",
    *_message_names,
]
