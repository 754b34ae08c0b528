"""The apex-grpc error tree: one root, validation errors apart from RPC errors.

Every RPC failure becomes an `APIError` subclass chosen from a table keyed by
gRPC status code (`error_class_for`), shared by the sync and async clients.
No error message ever contains the API key: errors are built from the status
the server sent, never from request metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]

REQUEST_ID_KEY = "x-request-id"


class ApexError(Exception):
    """Root of every exception apex-grpc raises."""


class ValidationError(ApexError, ValueError):
    """Bad input, detected before any network I/O.

    `argument` names the offending argument (e.g. ``messages[1].role``).
    """

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem


class ConfigurationError(ValidationError):
    """The client was configured in a way that cannot work (raised at construction)."""


class MissingAPIKeyError(ConfigurationError):
    """No API key was given and none is set in the environment."""


class InsecureTransportError(ConfigurationError):
    """Refused to send the API key in plaintext to a host that is not loopback."""


class ClientClosedError(ApexError):
    """The client (or the stream) was used after it was closed."""


class ForkError(ApexError):
    """The client was used in a forked child with a grpcio too old to allow it."""


class DeepResearchJobError(ApexError):
    """A deep-research job ended in the "failed" state."""

    def __init__(self, job_id: str, status: str, error: str) -> None:
        super().__init__(f"deep-research job {job_id} {status}: {error or 'no reason given'}")
        self.job_id = job_id
        self.status = status
        self.error = error


class DeepResearchTimeoutError(ApexError, TimeoutError):
    """Waiting for a deep-research job took longer than the given timeout."""

    def __init__(self, job_id: str, timeout: float, last_status: str) -> None:
        super().__init__(
            f"deep-research job {job_id} still {last_status!r} after {timeout:g}s; "
            "it keeps running on the server: wait again or fetch it later"
        )
        self.job_id = job_id
        self.timeout = timeout
        self.last_status = last_status


class APIError(ApexError):
    """The server (or the gRPC transport) answered an RPC with a non-OK status.

    Attributes: `code` (grpc.StatusCode), `details` (the status message, as
    sent), `method` (e.g. ``/apex.v1.ApexService/ChatCompletion``),
    `initial_metadata` / `trailing_metadata` (what the server sent),
    `request_id` (the server's ``x-request-id``, if any), `attempts`
    (how many times the call was tried) and `hint` (what to do about it,
    when the failure has a known cause, e.g. TLS to a plaintext server).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = None,
        method: str = "",
        initial_metadata: Metadata = (),
        trailing_metadata: Metadata = (),
        attempts: int = 1,
        debug_error_string: str | None = None,
        hint: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details = details
        self.method = method
        self.initial_metadata = initial_metadata
        self.trailing_metadata = trailing_metadata
        self.attempts = attempts
        self.debug_error_string = debug_error_string
        self.request_id = metadata_value(trailing_metadata) or metadata_value(initial_metadata)
        self.hint = hint or self._hint()
        super().__init__(self._message())

    def _hint(self) -> str | None:
        return hint_for(self.code, self.details)

    def _message(self) -> str:
        where = f" ({self.method.rsplit('/', 1)[-1]})" if self.method else ""
        request = f" [request id {self.request_id}]" if self.request_id else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        hint = f". {self.hint}" if self.hint else ""
        return f"{self.code.name}{where}: {self.details}{tries}{request}{hint}"

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_api_error,
            (
                type(self),
                self.details,
                self.code,
                self.method,
                self.initial_metadata,
                self.trailing_metadata,
                self.attempts,
                self.hint,
            ),
        )


def _rebuild_api_error(
    cls: type[APIError],
    details: str,
    code: grpc.StatusCode,
    method: str,
    initial_metadata: Metadata,
    trailing_metadata: Metadata,
    attempts: int,
    hint: str | None = None,
) -> APIError:
    return cls(
        details,
        code=code,
        method=method,
        initial_metadata=initial_metadata,
        trailing_metadata=trailing_metadata,
        attempts=attempts,
        hint=hint,
    )


# A loopback peer as grpc core names it in a status's details (IPv6 brackets may be
# percent-encoded: ipv6:%5B::1%5D:50051).
_LOOPBACK_PEER = (
    r"(?:ipv4:(?P<v4>(?P<host4>127\.[\d.]+):(?P<port4>\d+))"
    r"|ipv6:(?P<v6>(?:\[|%5B)::1(?:\]|%5D):(?P<port6>\d+)))"
)
_TLS_TO_PLAINTEXT = re.compile(
    _LOOPBACK_PEER + r".*(?:Tls|Ssl) handshake failed.*WRONG_VERSION_NUMBER",
    re.IGNORECASE | re.DOTALL,
)
_REFUSED_ON_LOOPBACK = re.compile(_LOOPBACK_PEER + r".*Connection refused", re.IGNORECASE)
SERVE_DEFAULT_PORT = "50051"
"""The port ``apex-grpc serve`` listens on unless told otherwise."""


def hint_for(code: grpc.StatusCode, details: str) -> str | None:
    """What to do about a failure with a known cause (None when there is none to give)."""
    if code is grpc.StatusCode.UNAVAILABLE:
        match = _TLS_TO_PLAINTEXT.search(details)
        if match is not None:
            return (
                f"{_address(match)} answered the TLS handshake in plaintext: for a local "
                "plaintext server such as `apex-grpc serve`, connect with secure=False, "
                "MACROCOSMOS_USE_HTTPS=false or an http:// base URL"
            )
        return nothing_listening_hint(details)
    return None


def nothing_listening_hint(details: str) -> str | None:
    """The fix when a loopback address refused the connection: start the local server there.

    None unless `details` (an UNAVAILABLE status's) says a loopback address refused it.
    """
    match = _REFUSED_ON_LOOPBACK.search(details)
    if match is None:
        return None
    host = match.group("host4") or "::1"
    port = match.group("port4") or match.group("port6")
    options = "" if host == "127.0.0.1" else f" --host {host}"
    options += "" if port == SERVE_DEFAULT_PORT else f" --port {port}"
    return (
        f"nothing is listening on {_address(match)}: to serve apex.v1 there, start the local "
        f"server (`apex-grpc serve{options} --api-key KEY`), or point the client at a "
        "running server"
    )


def _address(match: re.Match[str]) -> str:
    """``127.0.0.1:50051`` or ``[::1]:50051`` from a `_LOOPBACK_PEER` match."""
    return match.group("v4") or f"[::1]:{match.group('port6')}"


def metadata_value(metadata: Iterable[Any], key: str = REQUEST_ID_KEY) -> str | None:
    """The first value of `key` in metadata, as text (default: the request id)."""
    for name, value in metadata:
        if name == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


class RequestCancelledError(APIError):
    """CANCELLED: the call was cancelled (by the caller, or by the server)."""

    code = grpc.StatusCode.CANCELLED


class UnknownError(APIError):
    """UNKNOWN: the server failed without saying why."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(APIError):
    """INVALID_ARGUMENT: the server rejected the request."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(APIError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline passed before it finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class StreamTimeoutError(DeadlineExceededError):
    """A stream produced no chunk within its first-chunk or idle timeout."""


class NotFoundError(APIError):
    """NOT_FOUND: the job, chat or completion does not exist (for this key)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(APIError):
    """ALREADY_EXISTS."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(APIError):
    """PERMISSION_DENIED: the key is valid but not allowed to do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class RateLimitError(APIError):
    """RESOURCE_EXHAUSTED: rate limited, over quota or busy (retried when the server says when)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class MessageTooLargeError(APIError):
    """RESOURCE_EXHAUSTED because a message was over a size limit: grpc's "Sent message
    larger than max" or "Received message larger than max", on either side.

    Not a RateLimitError and never retried: the same call would fail the same way.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def _hint(self) -> str | None:
        if self.details.startswith("Received"):
            return (
                "a reply was larger than the receiver allows: raise the client's "
                "max_message_bytes, or ask for less at a time"
            )
        return (
            "a message was larger than allowed: send less, or raise max_message_bytes "
            "(the server has its own limit too)"
        )


MESSAGE_TOO_LARGE = re.compile(r"(?:Sent|Received) message larger than max")
"""How grpc words a message over its size limit (client or server, either direction)."""


def is_message_too_large(code: grpc.StatusCode | None, details: str | None) -> bool:
    """Whether a failure is grpc's message size limit (RESOURCE_EXHAUSTED "... larger than max")."""
    return (
        code is grpc.StatusCode.RESOURCE_EXHAUSTED
        and details is not None
        and MESSAGE_TOO_LARGE.search(details) is not None
    )


class FailedPreconditionError(APIError):
    """FAILED_PRECONDITION."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(APIError):
    """ABORTED: the operation was aborted, typically by a concurrency conflict."""

    code = grpc.StatusCode.ABORTED


class OutOfRangeError(APIError):
    """OUT_OF_RANGE."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(APIError):
    """UNIMPLEMENTED: the server does not implement this method or service."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalServerError(APIError):
    """INTERNAL: the server broke, or sent something that could not be decoded."""

    code = grpc.StatusCode.INTERNAL


class UnavailableError(APIError):
    """UNAVAILABLE: the server could not be reached or is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class StreamInterruptedError(UnavailableError):
    """A stream broke after its first chunk and could not be resumed.

    Its server or connection went away mid-answer, and continuing the answer on
    another replica was off (``resume=False``), impossible (another status, the
    deadline spent, a server that cannot continue) or failed. `details` is what
    grpc reported; `hint` names how far the answer got and why it stopped. A
    new call generates the answer again from its start.
    """

    def _hint(self) -> str | None:
        return (
            "the stream was cut off after its first chunk and was not resumed: "
            "a new call starts the answer over"
        )


class DataLossError(APIError):
    """DATA_LOSS."""

    code = grpc.StatusCode.DATA_LOSS


class AuthenticationError(APIError):
    """UNAUTHENTICATED: the API key is missing or wrong."""

    code = grpc.StatusCode.UNAUTHENTICATED


ERROR_CLASSES: dict[grpc.StatusCode, type[APIError]] = {
    cls.code: cls
    for cls in (
        RequestCancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        RateLimitError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalServerError,
        UnavailableError,
        DataLossError,
        AuthenticationError,
    )
}


def error_class_for(code: grpc.StatusCode, details: str | None = None) -> type[APIError]:
    """The APIError subclass for a status code (`APIError` itself for unknown codes);
    `details` tells a message over the size limit from a rate limit."""
    if is_message_too_large(code, details):
        return MessageTooLargeError
    return ERROR_CLASSES.get(code, APIError)


def from_rpc_error(
    error: grpc.RpcError,
    *,
    method: str,
    attempts: int = 1,
    cls: type[APIError] | None = None,
    code: grpc.StatusCode | None = None,
    details: str | None = None,
    hint: str | None = None,
) -> APIError:
    """Convert a grpc.RpcError (sync or aio) into our typed error, keeping its metadata.

    `cls`, `code`, `details` and `hint` replace what the error says, where the
    client knows better why the call ended.
    """
    if code is None:
        code = _call(error, "code")  # type: ignore[assignment]
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    if details is None:
        details = _call(error, "details")  # type: ignore[assignment]
    debug = _call(error, "debug_error_string")
    text = details if isinstance(details, str) else code.name
    return (cls or error_class_for(code, text))(
        text,
        code=code,
        method=method,
        initial_metadata=_as_metadata(_call(error, "initial_metadata")),
        trailing_metadata=_as_metadata(_call(error, "trailing_metadata")),
        attempts=attempts,
        debug_error_string=debug if isinstance(debug, str) else None,
        hint=hint,
    )


def _call(error: grpc.RpcError, name: str) -> object:
    getter = getattr(error, name, None)
    if getter is None:
        return None
    try:
        return getter()
    except Exception:  # a half-dead call object may raise on access
        return None


def _as_metadata(value: object) -> Metadata:
    if not value:
        return ()
    pairs: Sequence[tuple[str, str | bytes]] = value  # type: ignore[assignment]
    return tuple((str(k), v) for k, v in pairs)
