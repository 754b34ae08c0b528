"""The sync client's stall watchdog driven directly: real thread, real clock, no grpc.

A probe stands in for a stream: it records when the watchdog checked it and
names its next deadline, as `ChatCompletionStream._watchdog_check` does.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from apex_grpc._streaming.watchdog import Watchdog

pytestmark = pytest.mark.oldest

# A check is never early; "late" allows 1 s: the thread wakes within milliseconds on an
# idle machine, and 1 s still tells a missed wake-up (which waits for the next, 10 s away,
# or forever) from scheduling delay on 2 shared cores.
LATE = 1.0
FAR = 10.0


class Probe:
    """A watched stream: records each check and asks again `again` seconds later, once."""

    def __init__(self, again: float | None = None) -> None:
        self.checks: list[tuple[float, float]] = []  # (the `now` it was given, when it ran)
        self.again = again
        self.checked = threading.Event()

    def _watchdog_check(self, now: float) -> float | None:
        self.checks.append((now, time.monotonic()))
        self.checked.set()
        if self.again is None:
            return None
        again, self.again = self.again, None
        return now + again


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    dog = Watchdog()
    yield dog
    dog.stop()


def test_a_stream_is_checked_when_its_deadline_comes_not_before(watchdog: Watchdog) -> None:
    probe = Probe()
    deadline = time.monotonic() + 0.1
    watchdog.watch(probe, deadline)
    assert probe.checked.wait(0.1 + LATE)
    ((now, ran),) = probe.checks
    assert deadline <= now <= ran < deadline + LATE


def test_the_stream_names_its_next_deadline(watchdog: Watchdog) -> None:
    probe = Probe(again=0.1)
    watchdog.watch(probe, time.monotonic() + 0.05)
    deadline = time.monotonic() + 0.15 + 2 * LATE
    while len(probe.checks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    first, second = (now for now, _ in probe.checks)
    assert second >= first + 0.1
    time.sleep(0.2)
    assert len(probe.checks) == 2  # None: done, never checked again


def test_an_earlier_deadline_wakes_the_waiting_thread(watchdog: Watchdog) -> None:
    later, sooner = Probe(), Probe()
    watchdog.watch(later, time.monotonic() + FAR)
    time.sleep(0.05)  # the thread now sleeps until the far deadline
    deadline = time.monotonic() + 0.05
    watchdog.watch(sooner, deadline)
    assert sooner.checked.wait(0.05 + LATE)
    assert deadline <= sooner.checks[0][0] < deadline + LATE and not later.checks


def test_streams_with_the_same_deadline_are_all_checked_by_one_thread(watchdog: Watchdog) -> None:
    probes = [Probe() for _ in range(3)]
    deadline = time.monotonic() + 0.05
    for probe in probes:
        watchdog.watch(probe, deadline)
    thread = watchdog._thread
    assert thread is not None and thread.daemon  # never keeps the program from exiting
    assert thread.name == "apex-grpc-stream-watchdog"
    assert all(probe.checked.wait(0.05 + LATE) for probe in probes)
    assert watchdog._thread is thread


def test_a_dropped_stream_is_not_kept_alive_and_the_others_are_still_checked(
    watchdog: Watchdog,
) -> None:
    dropped = Probe()
    gone = weakref.ref(dropped)
    watchdog.watch(dropped, time.monotonic() + 0.05)
    del dropped
    gc.collect()
    assert gone() is None  # the watchdog holds it weakly
    kept = Probe()
    watchdog.watch(kept, time.monotonic() + 0.15)
    assert kept.checked.wait(0.15 + LATE)


def test_stop_ends_the_thread_and_later_streams_are_ignored() -> None:
    watchdog = Watchdog()
    early = Probe()
    watchdog.watch(early, time.monotonic() + FAR)
    thread = watchdog._thread
    assert thread is not None
    watchdog.stop()
    thread.join(LATE)
    assert not thread.is_alive()
    late = Probe()
    watchdog.watch(late, time.monotonic())
    time.sleep(0.1)
    assert not early.checks and not late.checks and watchdog._thread is thread


def test_the_thread_serves_new_streams_after_it_ran_out_of_them(watchdog: Watchdog) -> None:
    first = Probe()
    watchdog.watch(first, time.monotonic() + 0.02)
    assert first.checked.wait(0.02 + LATE)
    time.sleep(0.05)  # nothing left to watch: the thread waits for the next stream
    second = Probe()
    watchdog.watch(second, time.monotonic() + 0.02)
    assert second.checked.wait(0.02 + LATE)


def test_waiting_for_a_deadline_costs_no_cpu(watchdog: Watchdog) -> None:
    probe = Probe()
    watchdog.watch(probe, time.monotonic() + 0.6)
    cpu = time.process_time()
    time.sleep(0.4)
    # The main thread sleeps, so the process's CPU time is the watchdog's: a blocked wait
    # costs well under 0.1 s of it; a thread spinning until the deadline would cost ~0.4 s.
    assert time.process_time() - cpu < 0.1
    assert probe.checked.wait(0.2 + LATE)
