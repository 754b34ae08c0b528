"""One thread per sync client that cancels streams which stall past their limit.

A blocking grpc stream read takes no timeout, so the sync client enforces
first-chunk and idle timeouts from here. A stream registers once; when its
deadline comes, the watchdog asks it (`_watchdog_check`) whether it made
progress in the meantime. The stream either names its next deadline or
cancels itself and is forgotten. Per chunk a stream only records the time,
and streams without such timeouts never touch the watchdog.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from typing import Protocol


class Watched(Protocol):
    """What the watchdog needs from a stream."""

    def _watchdog_check(self, now: float) -> float | None:
        """Next deadline (monotonic seconds), or None when done or just cancelled."""


class Watchdog:
    """Calls `_watchdog_check` on registered streams when their deadlines come."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Watched]]] = []
        self._order = itertools.count()
        self._condition = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, stream: Watched, deadline: float) -> None:
        """Check `stream` at monotonic time `deadline` (and after, as it asks)."""
        with self._condition:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="apex-grpc-stream-watchdog", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._order), weakref.ref(stream)))
            if self._heap[0][2]() is stream:
                self._condition.notify()

    def stop(self) -> None:
        """End the thread (the client is closing)."""
        with self._condition:
            self._stopped = True
            self._heap.clear()
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._condition.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopped:
                    return
                _, _, ref = heapq.heappop(self._heap)
            stream = ref()
            if stream is None:
                continue
            next_deadline = stream._watchdog_check(time.monotonic())
            if next_deadline is not None:
                self.watch(stream, next_deadline)
            # Holding the stream while waiting would keep a dropped stream alive,
            # and its RPC uncancelled, until the next deadline of any stream.
            del stream
