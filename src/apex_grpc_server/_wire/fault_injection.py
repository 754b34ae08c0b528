"""Test knobs: failure injection and per-request echo settings from ``x-echo-*`` metadata.

The failure message is passed through unchanged: ``x-echo-fail-message`` for
printable ASCII, ``x-echo-fail-message-bin`` (UTF-8 bytes) for anything else.
Honoured only when ``ServerConfig.test_knobs`` is on (the default for the
echo engine). The interop echo headers (``x-grpc-test-echo-*``) are always on
and handled with the request id in ``_rpc.call_scope``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from apex_grpc_server._status import invalid_argument, shown

PREFIX = "x-echo-"
SLEEP_MS = "x-echo-sleep-ms"
FAIL_CODE = "x-echo-fail-code"
FAIL_MESSAGE = "x-echo-fail-message"
# gRPC ASCII metadata cannot carry \t, \r, \n or non-ASCII text: this
# binary variant carries any message as UTF-8 and wins over the plain one.
FAIL_MESSAGE_BIN = "x-echo-fail-message-bin"
FAIL_AFTER = "x-echo-fail-after"
FAIL_TIMES = "x-echo-fail-times"
FAIL_KEY = "x-echo-fail-key"
PUSHBACK_MS = "x-echo-pushback-ms"
CHUNKS = "x-echo-chunks"
CHUNK_SIZE = "x-echo-chunk-size"
# A comma-separated list: one delta per size, in order (the interop "varied sizes").
CHUNK_SIZES = "x-echo-chunk-sizes"
MAX_CHUNK_SIZES = 1_000
DELAY_MS = "x-echo-delay-ms"

MAX_SLEEP_MS = 600_000
MAX_CHUNKS = 1_000_000
MAX_CHUNK_SIZE = 4 * 1024 * 1024
DEFAULT_FAIL_MESSAGE = "failure injected by x-echo-fail-code"


@dataclass(frozen=True, slots=True)
class Failure:
    """An injected failure: the status to end with, and (streams) after how many messages."""

    code: grpc.StatusCode
    message: str
    after: int
    pushback_ms: str | None


@dataclass(frozen=True, slots=True)
class Knobs:
    """The knobs one request carries."""

    sleep_s: float = 0.0
    failure: Failure | None = None
    echo_chunks: int | None = None
    echo_chunk_size: int | None = None
    echo_delay_s: float | None = None
    echo_chunk_sizes: tuple[int, ...] | None = None


class FailureCounter:
    """Counts calls per ``x-echo-fail-key`` so only the first N fail (bounded memory)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def should_fail(self, key: str, times: int) -> bool:
        """Record one call carrying ``key``; true for the first ``times`` of them."""
        seen = self._counts.pop(key, 0)
        self._counts[key] = seen + 1
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return seen < times


def has_knobs(metadata: Mapping[str, str | bytes]) -> bool:
    """Whether any ``x-echo-*`` key is present (the cheap check on every call)."""
    return any(key.startswith(PREFIX) for key in metadata)


def parse_knobs(metadata: Mapping[str, str | bytes], counter: FailureCounter) -> Knobs:
    """Read the knobs, raising INVALID_ARGUMENT naming the bad header."""
    sleep_ms = _int(metadata, SLEEP_MS, 0, MAX_SLEEP_MS)
    failure = None
    code_text = _text(metadata, FAIL_CODE)
    if code_text is not None:
        code = _status_code(code_text)
        times = _int(metadata, FAIL_TIMES, 0, 1_000_000)
        fails = True
        if times is not None:
            fails = counter.should_fail(_text(metadata, FAIL_KEY) or "", times)
        if fails:
            failure = Failure(
                code=code,
                message=_text(metadata, FAIL_MESSAGE_BIN)
                or _text(metadata, FAIL_MESSAGE)
                or DEFAULT_FAIL_MESSAGE,
                after=_int(metadata, FAIL_AFTER, 0, MAX_CHUNKS) or 0,
                pushback_ms=_text(metadata, PUSHBACK_MS),
            )
    delay_ms = _int(metadata, DELAY_MS, 0, MAX_SLEEP_MS)
    return Knobs(
        sleep_s=(sleep_ms or 0) / 1000,
        failure=failure,
        echo_chunks=_int(metadata, CHUNKS, 0, MAX_CHUNKS),
        echo_chunk_size=_int(metadata, CHUNK_SIZE, 1, MAX_CHUNK_SIZE),
        echo_delay_s=None if delay_ms is None else delay_ms / 1000,
        echo_chunk_sizes=_sizes(metadata),
    )


def _sizes(metadata: Mapping[str, str | bytes]) -> tuple[int, ...] | None:
    text = _text(metadata, CHUNK_SIZES)
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not 0 < len(parts) <= MAX_CHUNK_SIZES or not all(p.isdigit() for p in parts):
        raise invalid_argument(
            f"{CHUNK_SIZES}: must be 1 to {MAX_CHUNK_SIZES} comma-separated sizes,"
            f" got {shown(text)}"
        )
    sizes = tuple(int(p) for p in parts)
    if not all(1 <= size <= MAX_CHUNK_SIZE for size in sizes):
        raise invalid_argument(f"{CHUNK_SIZES}: each size must be in [1, {MAX_CHUNK_SIZE}]")
    return sizes


def _text(metadata: Mapping[str, str | bytes], key: str) -> str | None:
    value = metadata.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _int(metadata: Mapping[str, str | bytes], key: str, low: int, high: int) -> int | None:
    text = _text(metadata, key)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise invalid_argument(f"{key}: must be an integer, got {shown(text)}") from None
    if not low <= value <= high:
        raise invalid_argument(f"{key}: must be in [{low}, {high}], got {value}")
    return value


def _status_code(text: str) -> grpc.StatusCode:
    cleaned = text.strip().upper()
    for code in grpc.StatusCode:
        if cleaned in (code.name, str(code.value[0])):
            if code is grpc.StatusCode.OK:
                break
            return code
    raise invalid_argument(f"{FAIL_CODE}: unknown or non-error status {shown(text)}")
