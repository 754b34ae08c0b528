"""Following a deep-research job by polling, with no I/O.

`JobWatch` takes each GetDeepResearcherJobResponse and returns a `JobProgress`:
the result chunks not seen before (in seq_id order) and whether the job is
over. It also chooses the next polling delay: short while the job makes
progress, backing off while it does not.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

from apex_grpc._errors import (
    DeadlineExceededError,
    DeepResearchJobError,
    DeepResearchTimeoutError,
    ValidationError,
)
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings.checks import MetadataArg
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

COMPLETED = "completed"
FAILED_STATES = frozenset({"failed", "error", "cancelled", "canceled"})


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll a job: from `initial` seconds up to `maximum` while idle."""

    initial: float = 0.5
    maximum: float = 5.0
    multiplier: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.multiplier < 1:
            raise ValidationError(
                "poll_interval", "needs 0 < initial <= maximum and multiplier >= 1"
            )


DEFAULT_POLL = PollPolicy()


class PollOptions(TypedDict, total=False):
    """The call options `follow`, `stream` and `wait` apply to each poll.

    (Their own ``timeout`` is the time to follow the job in all; each poll's
    deadline is what is left of it.)
    """

    metadata: MetadataArg
    max_retries: int
    retry: RetryPolicy
    compression: bool
    wait_for_ready: bool


def chunk_text(chunk: pb.DeepResearcherResultChunk) -> str:
    """The text of a result chunk (its JSON ``[0]["content"]``), or the raw chunk."""
    try:
        parsed = json.loads(chunk.chunk)
    except ValueError:
        return chunk.chunk
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        content = parsed[0].get("content")
        if isinstance(content, str):
            return content
    return chunk.chunk


class JobProgress(NamedTuple):
    """One poll of a followed deep-research job (``client.deep_research.follow``)."""

    response: pb.GetDeepResearcherJobResponse
    """The job as this poll saw it."""
    new_chunks: tuple[pb.DeepResearcherResultChunk, ...]
    """Result chunks not seen in earlier polls, in seq_id order."""
    done: bool
    """Whether the job is over (completed, or failed: then `follow` raises next)."""

    @property
    def status(self) -> str:
        """The job's status as the server reports it (e.g. "running", "completed")."""
        return self.response.status

    @property
    def chunk_count(self) -> int:
        """How many result chunks the job has so far."""
        return len(self.response.result)


class JobWatch:
    """The client's view of one deep-research job while it is polled."""

    def __init__(
        self,
        job_id: str,
        *,
        timeout: float | None,
        policy: PollPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(job_id, str) or not job_id.strip():
            raise ValidationError("job_id", "must not be empty")
        if timeout is not None and not timeout > 0:
            raise ValidationError("timeout", f"must be > 0 seconds, got {timeout!r}")
        self.job_id = job_id
        self.policy = policy
        self.last: pb.GetDeepResearcherJobResponse | None = None
        self.done = False
        self.failure: DeepResearchJobError | None = None
        self._seen: set[int] = set()
        self._delay = policy.initial
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._timeout = timeout

    def update(self, response: pb.GetDeepResearcherJobResponse) -> JobProgress:
        """Take a poll's answer: what is new, and whether the job is over."""
        self.last = response
        fresh = sorted(
            (c for c in response.result if c.seq_id not in self._seen), key=lambda c: c.seq_id
        )
        self._seen.update(c.seq_id for c in fresh)
        status = response.status.lower()
        self._delay = (
            self.policy.initial
            if fresh
            else min(self._delay * self.policy.multiplier, self.policy.maximum)
        )
        if status == COMPLETED:
            self.done = True
        elif status in FAILED_STATES or response.HasField("error"):
            self.done = True
            self.failure = DeepResearchJobError(self.job_id, response.status, response.error)
        return JobProgress(response, tuple(fresh), self.done)

    def next_delay(self) -> float | None:
        """Seconds to wait before the next poll (0 before the first); None once the job is over.

        Raises the job's failure once it is over, and DeepResearchTimeoutError
        once the timeout has passed.
        """
        if self.last is None:
            return 0.0
        if self.done:
            if self.failure is not None:
                raise self.failure
            return None
        if self._deadline is None:
            return self._delay
        left = self._deadline - self._clock()
        if left <= 0:
            raise DeepResearchTimeoutError(self.job_id, self._timeout or 0.0, self.last.status)
        return min(self._delay, left)

    @contextlib.contextmanager
    def polling(self, options: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Around one poll: gives its options (the caller's, with what is left of the
        timeout as its deadline), and turns a poll cut short by that deadline into
        DeepResearchTimeoutError."""
        if self._deadline is None:
            yield dict(options)
            return
        try:
            yield {**options, "timeout": max(self._deadline - self._clock(), 0.001)}
        except DeadlineExceededError as error:
            if self._clock() < self._deadline:
                raise  # the poll's own deadline, not the time to follow the job
            status = self.last.status if self.last else "unknown"
            raise DeepResearchTimeoutError(self.job_id, self._timeout or 0.0, status) from error
