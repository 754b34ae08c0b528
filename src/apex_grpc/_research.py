"""Following a deep-research job by polling, with no I/O.

`JobWatch` takes each GetDeepResearcherJobResponse, returns the result chunks
not seen before (in seq_id order), says when the job is over, and chooses
the next polling delay: short while the job makes progress, backing off
while it does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from apex_grpc._errors import DeepResearchJobError, DeepResearchTimeoutError, ValidationError
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

    def update(
        self, response: pb.GetDeepResearcherJobResponse
    ) -> list[pb.DeepResearcherResultChunk]:
        """Take a poll's answer; returns the new chunks. Raises if the job failed."""
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
        return fresh

    def next_delay(self) -> float:
        """Seconds to wait before the next poll; raises once the timeout has passed."""
        if self._deadline is None:
            return self._delay
        left = self._deadline - self._clock()
        if left <= 0:
            raise DeepResearchTimeoutError(
                self.job_id, self._timeout or 0.0, self.last.status if self.last else "unknown"
            )
        return min(self._delay, left)

    def result(self) -> pb.GetDeepResearcherJobResponse:
        """The final state of a finished job; raises if it failed."""
        self.raise_if_failed()
        if not self.done or self.last is None:
            raise RuntimeError(f"deep-research job {self.job_id} is not finished")
        return self.last

    def raise_if_failed(self) -> None:
        """Raise the job's failure, if it failed."""
        if self.failure is not None:
            raise self.failure
