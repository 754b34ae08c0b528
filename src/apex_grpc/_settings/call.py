"""How one call runs: CallOptions (the keywords every method takes) resolved into CallSettings.

`choose_timeout` is the one place that decides a call's deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypedDict

import grpc

from apex_grpc._errors import ValidationError, metadata_value
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings import checks
from apex_grpc._settings.checks import NOT_GIVEN, Metadata, MetadataArg, MetadataValue, NotGiven

DEFAULT_TIMEOUT = 600.0
"""Seconds a call may take, across retries, when neither it nor its client nor its method says."""


def choose_timeout(
    call: float | NotGiven | None = NOT_GIVEN,
    client: float | NotGiven | None = NOT_GIVEN,
    method_default: float | None = None,
) -> float | None:
    """The overall deadline of one call in seconds (None: no deadline).

    The first that was chosen wins: the call's own ``timeout=``, then the
    client's ``timeout=`` (a limit the user set on purpose), then the
    method's own default (web search: max_response_time + 10 s), then
    DEFAULT_TIMEOUT.
    """
    if not isinstance(call, NotGiven):
        return call
    if not isinstance(client, NotGiven):
        return client
    if method_default is not None:
        return method_default
    return DEFAULT_TIMEOUT


class CallInfo:
    """What the server sent besides the response, for a unary call given ``call_info=``.

    Filled in when the call ends, successfully or not: ``initial_metadata``,
    ``trailing_metadata``, ``code`` (grpc.StatusCode), ``details``,
    ``request_id`` (the server's ``x-request-id``), ``attempts`` (all of
    them) and ``refused`` (how many of those the server refused before it saw
    them, REFUSED_STREAM on a full connection: retried elsewhere for free).
    """

    __slots__ = (
        "attempts",
        "code",
        "details",
        "initial_metadata",
        "refused",
        "request_id",
        "trailing_metadata",
    )

    def __init__(self) -> None:
        self.initial_metadata: Metadata = ()
        self.trailing_metadata: Metadata = ()
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self.request_id: str | None = None
        self.attempts = 0
        self.refused = 0

    def fill(
        self,
        initial: Iterable[tuple[str, MetadataValue]] | None,
        trailing: Iterable[tuple[str, MetadataValue]] | None,
        code: grpc.StatusCode | None,
        details: str | None,
        attempts: int,
        refused: int = 0,
    ) -> None:
        """Record one finished call (the transports call this)."""
        self.initial_metadata = tuple(initial or ())
        self.trailing_metadata = tuple(trailing or ())
        self.code, self.details, self.attempts, self.refused = code, details, attempts, refused
        self.request_id = metadata_value(self.trailing_metadata) or metadata_value(
            self.initial_metadata
        )

    def __repr__(self) -> str:
        code = self.code.name if self.code else None
        return (
            f"CallInfo(code={code}, request_id={self.request_id!r}, attempts={self.attempts}, "
            f"refused={self.refused})"
        )


class CallOptions(TypedDict, total=False):
    """The keywords every method takes besides its own, to change how that one call runs.

    timeout: overall deadline in seconds across all attempts (None: none).
    metadata: extra request metadata for this call.
    max_retries: retry count for this call.
    retry: a whole RetryPolicy for this call.
    compression: gzip-compress this request.
    wait_for_ready: wait for the channel to connect instead of failing fast.
    call_info: a CallInfo to fill with the server's metadata and status (unary calls).
    """

    timeout: float | None
    metadata: MetadataArg
    max_retries: int
    retry: RetryPolicy
    compression: bool
    wait_for_ready: bool
    call_info: CallInfo


class StreamOptions(TypedDict, total=False):
    """The keywords only a streamed chat completion takes.

    first_chunk_timeout: seconds to wait for the first chunk (None: no limit).
    idle_timeout: seconds to wait between chunks (None: no limit).
    resume: continue an answer cut after its first chunk on another replica (False:
    StreamInterruptedError, as before).
    They default to the client's stream_first_chunk_timeout / stream_idle_timeout /
    stream_resume.
    """

    first_chunk_timeout: float | None
    idle_timeout: float | None
    resume: bool


class WriteOptions(TypedDict, total=False):
    """The keyword only the write methods take (those whose `Method.write` is set).

    idempotency_key: the key sent as ``idempotency-key`` metadata with this write
    (default: 32 random hex characters per call), the same on each of its retries; 1 to
    128 visible ASCII characters. Pass the same key again to make a repeat of the
    whole call safe too.
    """

    idempotency_key: str


IDEMPOTENCY_KEY_HEADER = "idempotency-key"
"""The metadata key of a write's idempotency key (servers match it by this exact name)."""


GivenOptions = Mapping[str, object]
"""The CallOptions (and StreamOptions) a caller passed, by name: what `resolve` reads."""


def call_options(
    timeout: object,
    metadata: object,
    max_retries: object,
    retry: object,
    compression: object,
    wait_for_ready: object,
    call_info: object,
    first_chunk_timeout: object = NOT_GIVEN,
    idle_timeout: object = NOT_GIVEN,
    resume: object = NOT_GIVEN,
    idempotency_key: object = NOT_GIVEN,
) -> GivenOptions:
    """The options a resource method was given (those not NOT_GIVEN), for `resolve`.

    Spelled out, not ``**kwargs``: a method passes all of them on every call, and
    seven identity tests cost a quarter of a dict comprehension.
    """
    given: dict[str, object] = {}
    if timeout is not NOT_GIVEN:
        given["timeout"] = timeout
    if metadata is not NOT_GIVEN:
        given["metadata"] = metadata
    if max_retries is not NOT_GIVEN:
        given["max_retries"] = max_retries
    if retry is not NOT_GIVEN:
        given["retry"] = retry
    if compression is not NOT_GIVEN:
        given["compression"] = compression
    if wait_for_ready is not NOT_GIVEN:
        given["wait_for_ready"] = wait_for_ready
    if call_info is not NOT_GIVEN:
        given["call_info"] = call_info
    if first_chunk_timeout is not NOT_GIVEN:
        given["first_chunk_timeout"] = first_chunk_timeout
    if idle_timeout is not NOT_GIVEN:
        given["idle_timeout"] = idle_timeout
    if resume is not NOT_GIVEN:
        given["resume"] = resume
    if idempotency_key is not NOT_GIVEN:
        given["idempotency_key"] = idempotency_key
    return given


class RedactedMetadata(tuple[tuple[str, MetadataValue], ...]):
    """Request metadata whose repr hides the authorization value (grpc sends it as is)."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = [(k, "***" if k == "authorization" else v) for k, v in self]
        return f"RedactedMetadata({shown!r})"

    __str__ = __repr__

    def __add__(self, other: tuple[tuple[str, MetadataValue], ...]) -> RedactedMetadata:  # type: ignore[override]
        return RedactedMetadata(tuple.__add__(self, other))


class CallSettings(NamedTuple):
    """How one call runs, everything resolved: what the transports hand to grpc."""

    timeout: float | None
    """Overall deadline in seconds, across attempts (None: none)."""
    metadata: RedactedMetadata
    """Every request metadata entry: identity, the client's, the call's."""
    retry: RetryPolicy
    compression: grpc.Compression | None
    wait_for_ready: bool | None
    """True, or None for grpc's default (fail fast)."""
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    call_info: CallInfo | None = None
    idempotency_key: str | None = None
    """The caller's ``idempotency_key=`` (None: a write draws one, see `for_write`)."""
    resume: bool = True
    """Whether a stream cut after its first chunk continues on another replica."""

    def for_write(self) -> CallSettings:
        """These settings with an ``idempotency-key`` entry: the caller's key, else a fresh
        fresh 128-bit random key in hex (os.urandom: the uuid module would cost every
        import 3 ms). Made once per logical call, so every retry sends the same."""
        chosen = self.idempotency_key or os.urandom(16).hex()
        entry = ((IDEMPOTENCY_KEY_HEADER, chosen),)
        return self._replace(metadata=self.metadata + entry)

    def grpc_arguments(self, timeout: float | None) -> dict[str, Any]:
        """The keyword arguments of one attempt's grpc call, given `timeout` seconds."""
        return {
            "timeout": timeout,
            "metadata": self.metadata,
            "compression": self.compression,
            "wait_for_ready": self.wait_for_ready,
        }


def _joined(
    remembered: dict[Metadata, RedactedMetadata], base: RedactedMetadata, extra: Metadata
) -> RedactedMetadata:
    """The client's metadata and a call's, remembered in `remembered` (calls often pass a
    constant). The caller keeps it per client, not globally: the joined tuples hold its key."""
    joined = remembered.get(extra)
    if joined is None:
        if len(remembered) >= 256:
            remembered.clear()
        joined = remembered[extra] = base + extra
    return joined


def resolve(
    base: CallSettings,
    client_timeout: float | NotGiven | None,
    joined: dict[Metadata, RedactedMetadata],
    options: GivenOptions,
    method_default: float | None,
    stream_options: bool,
) -> CallSettings:
    """Check a call's options and apply them over the client's defaults (`base`).

    Only the options given are looked at (a call usually passes one or two).
    `client_timeout`: the client's own ``timeout=`` (see `choose_timeout`);
    `joined`: the client's memory of metadata joined to its own;
    `stream_options`: whether the method takes StreamOptions too (chat completions).
    """
    call_timeout: float | NotGiven | None = NOT_GIVEN
    metadata, retry, compression = base.metadata, base.retry, base.compression
    wait_for_ready, call_info = base.wait_for_ready, None
    idempotency_key = None
    first_chunk, idle, resume = base.first_chunk_timeout, base.idle_timeout, base.resume
    max_retries: int | None = None
    for name, value in options.items():
        if name == "metadata":
            extra = checks.metadata(value, name)  # type: ignore[arg-type]
            if extra:
                metadata = _joined(joined, base.metadata, extra)
        elif name == "timeout":
            call_timeout = checks.timeout(value, name)
        elif name == "retry":
            if value is not None and not isinstance(value, RetryPolicy):
                raise ValidationError(name, f"must be a RetryPolicy, got {type(value).__name__}")
            retry = value or base.retry
        elif name == "max_retries":
            max_retries = None if value is None else checks.max_retries(value, name)
        elif name == "compression":
            chosen = checks.optional_boolean(value, name)
            if chosen is not None:
                compression = grpc.Compression.Gzip if chosen else None
        elif name == "wait_for_ready":
            chosen = checks.optional_boolean(value, name)
            if chosen is not None:
                wait_for_ready = chosen or None
        elif name == "call_info":
            if value is not None and not isinstance(value, CallInfo):
                raise ValidationError(name, f"must be a CallInfo, got {type(value).__name__}")
            call_info = value
        elif name == "idempotency_key":
            idempotency_key = checks.idempotency_key(value, name)
        elif stream_options and name == "first_chunk_timeout":
            first_chunk = checks.timeout(value, name)
        elif stream_options and name == "idle_timeout":
            idle = checks.timeout(value, name)
        elif stream_options and name == "resume":
            resume = checks.boolean(value, name)
        else:
            raise ValidationError(name, "unexpected keyword argument")
    if max_retries is not None:
        retry = retry.with_max_retries(max_retries)
    return CallSettings(
        timeout=choose_timeout(call_timeout, client_timeout, method_default),
        metadata=metadata,
        retry=retry,
        compression=compression,
        wait_for_ready=wait_for_ready,
        first_chunk_timeout=first_chunk,
        idle_timeout=idle,
        call_info=call_info,
        idempotency_key=idempotency_key,
        resume=resume,
    )
