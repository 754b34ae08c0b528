"""A prepared call: method, validated request and per-call options, built with no I/O.

Resource methods turn their keyword arguments into a `Call`; a transport
runs it. `CallOptions` are the keywords every method accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, NamedTuple, TypedDict

import grpc

from apex_grpc._config import (
    CallDefaults,
    MetadataArg,
    MetadataValue,
    check_max_retries,
    check_timeout,
    normalize_metadata,
)
from apex_grpc._errors import ValidationError, metadata_value
from apex_grpc._methods import Method, Req, Resp
from apex_grpc._retry import RetryPolicy


class CallInfo:
    """What the server sent besides the response, for a unary call given ``call_info=``.

    Filled in when the call ends, successfully or not: ``initial_metadata``,
    ``trailing_metadata``, ``code`` (grpc.StatusCode), ``details``,
    ``request_id`` (the server's ``x-request-id``) and ``attempts``.
    """

    __slots__ = (
        "attempts",
        "code",
        "details",
        "initial_metadata",
        "request_id",
        "trailing_metadata",
    )

    def __init__(self) -> None:
        self.initial_metadata: tuple[tuple[str, MetadataValue], ...] = ()
        self.trailing_metadata: tuple[tuple[str, MetadataValue], ...] = ()
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self.request_id: str | None = None
        self.attempts = 0

    def fill(
        self,
        initial: Iterable[tuple[str, MetadataValue]] | None,
        trailing: Iterable[tuple[str, MetadataValue]] | None,
        code: grpc.StatusCode | None,
        details: str | None,
        attempts: int,
    ) -> None:
        """Record one finished call (the transports call this)."""
        self.initial_metadata = tuple(initial or ())
        self.trailing_metadata = tuple(trailing or ())
        self.code, self.details, self.attempts = code, details, attempts
        self.request_id = metadata_value(self.trailing_metadata) or metadata_value(
            self.initial_metadata
        )

    def __repr__(self) -> str:
        code = self.code.name if self.code else None
        return f"CallInfo(code={code}, request_id={self.request_id!r}, attempts={self.attempts})"


class CallOptions(TypedDict, total=False):
    """Per-call overrides accepted by every resource method.

    timeout: overall deadline in seconds across all attempts (None: none).
    metadata: extra request metadata for this call.
    max_retries: retry count for this call.
    retry: a whole RetryPolicy for this call.
    compression: gzip-compress this request.
    wait_for_ready: wait for the channel to connect instead of failing fast.
    call_info: a CallInfo to fill with the server's metadata and status.
    """

    timeout: float | None
    metadata: MetadataArg
    max_retries: int
    retry: RetryPolicy
    compression: bool
    wait_for_ready: bool
    call_info: CallInfo


CALL_OPTION_NAMES = frozenset(CallOptions.__optional_keys__)


class ResolvedOptions(NamedTuple):
    """Per-call options after validation; None means "use the client's default"."""

    timeout: float | None = None
    timeout_given: bool = False
    metadata: tuple[tuple[str, MetadataValue], ...] = ()
    retry: RetryPolicy | None = None
    max_retries: int | None = None
    compression: bool | None = None
    wait_for_ready: bool | None = None
    call_info: CallInfo | None = None


NO_OPTIONS = ResolvedOptions()


class Call(NamedTuple, Generic[Req, Resp]):
    """One RPC to make: what to call, with what, and how."""

    method: Method[Req, Resp]
    request: Req
    options: ResolvedOptions = NO_OPTIONS
    default_timeout: float | None = None
    """A method-specific deadline used when neither the call nor the client chose one."""


def resolve_options(options: Mapping[str, object]) -> ResolvedOptions:
    """Validate the CallOptions part of a method's keyword arguments."""
    if not options:
        return NO_OPTIONS
    unknown = set(options) - CALL_OPTION_NAMES
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unexpected keyword argument")
    timeout_given = "timeout" in options
    timeout = check_timeout(options["timeout"], "timeout") if timeout_given else None  # type: ignore[arg-type]
    retry = options.get("retry")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ValidationError("retry", f"must be a RetryPolicy, got {type(retry).__name__}")
    raw_retries = options.get("max_retries")
    max_retries = None if raw_retries is None else check_max_retries(raw_retries, "max_retries")  # type: ignore[arg-type]
    return ResolvedOptions(
        timeout=timeout,
        timeout_given=timeout_given,
        metadata=normalize_metadata(options.get("metadata"), "metadata"),  # type: ignore[arg-type]
        retry=retry,
        max_retries=max_retries,
        compression=_optional_bool(options, "compression"),
        wait_for_ready=_optional_bool(options, "wait_for_ready"),
        call_info=_call_info(options.get("call_info")),
    )


def _call_info(value: object) -> CallInfo | None:
    if value is not None and not isinstance(value, CallInfo):
        raise ValidationError("call_info", f"must be a CallInfo, got {type(value).__name__}")
    return value


def _optional_bool(options: Mapping[str, object], name: str) -> bool | None:
    value = options.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValidationError(name, f"must be True or False, got {value!r}")
    return value


def split_options(
    params: Mapping[str, object], allowed: frozenset[str]
) -> tuple[dict[str, object], ResolvedOptions]:
    """Split keyword arguments into method parameters and call options.

    Anything that is neither raises a ValidationError naming it.
    """
    own: dict[str, object] = {}
    options: dict[str, object] = {}
    for name, value in params.items():
        if name in allowed:
            own[name] = value
        elif name in CALL_OPTION_NAMES:
            options[name] = value
        else:
            raise ValidationError(name, "unexpected keyword argument")
    return own, resolve_options(options)


class CallPlan(NamedTuple):
    """How to run one call: everything the transport passes to grpc, resolved."""

    timeout: float | None
    metadata: tuple[tuple[str, MetadataValue], ...]
    retry: RetryPolicy
    compression: grpc.Compression | None
    wait_for_ready: bool | None
    call_info: CallInfo | None = None


def plan_call(
    options: ResolvedOptions,
    defaults: CallDefaults,
    static_metadata: tuple[tuple[str, MetadataValue], ...],
    default_timeout: float | None = None,
) -> CallPlan:
    """Merge a call's options over the client's defaults.

    Timeout precedence: the call's own, then one the user set on the client,
    then the method's default (web search: max_response_time + margin), then
    the client's built-in default.
    """
    if options.timeout_given:
        timeout = options.timeout
    elif not defaults.timeout_is_default or default_timeout is None:
        timeout = defaults.timeout
    else:
        timeout = default_timeout
    retry = options.retry or defaults.retry
    if options.max_retries is not None:
        retry = retry.with_max_retries(options.max_retries)
    compress = defaults.compression if options.compression is None else options.compression
    return CallPlan(
        timeout=timeout,
        metadata=static_metadata + options.metadata if options.metadata else static_metadata,
        retry=retry,
        compression=grpc.Compression.Gzip if compress else None,
        wait_for_ready=(
            defaults.wait_for_ready if options.wait_for_ready is None else options.wait_for_ready
        )
        or None,
        call_info=options.call_info,
    )
