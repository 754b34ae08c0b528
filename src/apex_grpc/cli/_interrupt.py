"""Ctrl-C while a stream is read: cancel the RPC at once, then exit 130.

The sync client reads a stream inside grpc's C code; a KeyboardInterrupt
raised there would unwind through grpc's internals. Instead, for the
duration of the read, SIGINT closes the stream: `close()` is thread-safe
and cancels the call, the blocked read returns, and the caller sees
`interrupted` and stops cleanly. A second Ctrl-C raises KeyboardInterrupt.

A chunk read just before the Ctrl-C must not reach the screen after it:
`unless_interrupted` runs the write with SIGINT held back, so the check
and the write cannot be split by the handler.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol


class Closeable(Protocol):
    """Something a Ctrl-C can stop (a chat stream)."""

    def close(self) -> None:
        """Stop it, cancelling the RPC."""


class CancelOnInterrupt:
    """Within the block, Ctrl-C closes `target` and sets `interrupted`.

    Outside the main thread, or when SIGINT is ignored (a background job),
    nothing changes.
    """

    def __init__(self, target: Closeable) -> None:
        self.target = target
        self.interrupted = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self.target.close()

    def unless_interrupted(self, action: Callable[[], None]) -> None:
        """Run `action` (a write) only if Ctrl-C has not been pressed; never split by one.

        With SIGINT blocked, a Ctrl-C typed during the write waits for its end; one
        that came before has run its handler by the time the blocking call returns
        (Python runs pending handlers after each call), so `interrupted` is current.
        """
        if not self._installed or not hasattr(signal, "pthread_sigmask"):  # Windows
            if not self.interrupted:
                action()
            return
        held = {signal.SIGINT}
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
            if not self.interrupted:
                action()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)

    def __enter__(self) -> CancelOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
