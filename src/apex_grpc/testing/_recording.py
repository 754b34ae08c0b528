"""What the fake saw of each call: the request, its metadata, its deadline, how it ended (pure)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

if TYPE_CHECKING:
    from apex_grpc.testing._routes import Route

_SECRET_KEYS = frozenset({"authorization"})


class RecordedMetadata(Mapping[str, str | bytes]):
    """A call's request metadata by key (the last value of a repeated key; see `get_all`).

    Its repr hides the ``authorization`` value, so a failing assertion never
    prints an API key; reading it (``metadata["authorization"]``) gives it as sent.
    """

    def __init__(self, pairs: tuple[tuple[str, str | bytes], ...]) -> None:
        self.pairs = pairs
        """Every entry, in the order received."""
        self._last = dict(pairs)

    def __getitem__(self, key: str) -> str | bytes:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def get_all(self, key: str) -> list[str | bytes]:
        """Every value sent under `key`, in order."""
        return [value for name, value in self.pairs if name == key]

    def __repr__(self) -> str:
        shown = {k: "***" if k in _SECRET_KEYS else v for k, v in self._last.items()}
        return f"RecordedMetadata({shown!r})"


class RecordedCall:
    """One call the fake received: ``method``, ``request``, ``metadata``, and how it ended."""

    def __init__(
        self,
        method: str,
        request: Message,
        metadata: tuple[tuple[str, str | bytes], ...],
        time_remaining: float | None,
    ) -> None:
        self.method = method
        """The RPC's name, e.g. "ChatCompletion"."""
        self.request = request
        """The request message as the fake decoded it."""
        self.metadata = RecordedMetadata(metadata)
        """The request metadata (``metadata["x-source"]``; the key is in ``authorization``)."""
        self.time_remaining = time_remaining
        """Seconds left of the call's deadline when it arrived (None: no deadline)."""
        self.received_at = time.monotonic()
        """When the fake received it (time.monotonic(): compare two calls' times)."""
        self.route: Route | None = None
        """The scripted route that answered it (None: nothing was scripted for it)."""
        self.code: grpc.StatusCode | None = None
        """How the call ended (None while it runs): the status the fake sent, or
        DEADLINE_EXCEEDED / CANCELLED when its deadline passed or the client cancelled it."""
        self.cancelled = False
        """Whether the call ended before the fake finished it (cancelled, deadline passed)."""
        self.chunks_sent = 0
        """How many stream chunks the fake sent."""
        self._ended = threading.Event()

    @property
    def api_key(self) -> str | None:
        """The API key as it arrived (``authorization: Bearer KEY``), or None without one."""
        value = self.metadata.get("authorization")
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        scheme, _, key = text.partition(" ")
        return key if scheme.lower() == "bearer" else text

    @property
    def ended(self) -> bool:
        """Whether the fake is done with the call (answered, failed or cancelled)."""
        return self._ended.is_set()

    def wait_ended(self, timeout: float = 5.0) -> bool:
        """Block until the call has ended on the fake's side; False if `timeout` passed first.

        A client's cancel reaches the server a little after the client returns,
        so assert ``call.wait_ended() and call.cancelled``.
        """
        return self._ended.wait(timeout)

    async def ended_async(self, timeout: float = 5.0) -> bool:
        """`wait_ended` for async tests (does not block the event loop)."""
        return await asyncio.to_thread(self._ended.wait, timeout)

    def end(self, code: grpc.StatusCode, *, cancelled: bool = False) -> None:
        """Record how the call ended (the fake's server calls this)."""
        if not self._ended.is_set():
            self.code = code
            self.cancelled = cancelled
            self._ended.set()

    def __repr__(self) -> str:
        state = "running" if self.code is None else self.code.name
        if self.cancelled:
            state = "cancelled"
        return (
            f"RecordedCall({self.method}, {state}, request={{{fields_of(self.request)}}}, "
            f"metadata={self.metadata!r})"
        )


def fields_of(message: Any) -> str:
    """A one-line text form of a message (for error details and reports)."""
    return " ".join(str(message).split()) or "(empty)"
