"""A repeat of ``deep_research.submit`` with the caller's own key replays, on a real server.

The request carries a sampling seed; the client draws one per call when none is given,
which made a repeat under the same key a different request, refused as INVALID_ARGUMENT
("this key was used with a different request"). Given a key and no seed, the seed is
derived from the key (issue 25 item 9; docs/errors.md), so the repeat is the same request
and the server answers it with the first job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import apex_grpc as mc

from .conftest import settle

# Not in the oldest-dependency suite: there, grpcio 1.64's aio poller once spun on EAGAIN
# (BlockingIOError in PollerCompletionQueue) while this test's in-process server stopped with
# its deep-research jobs running and an aio client on another loop, and the stop never ended.
# What this guards is the client's seed, the same on every grpcio.

HI: list[mc.MessageParam] = [{"role": "user", "content": "Plan a week of meals"}]
REPLAYED = ("idempotent-replayed", "true")


@pytest.fixture
def server_target(start_server: Callable[..., Any]) -> str:
    return str(start_server(allow_any_key=True).target)


@pytest.mark.parametrize("client_type", [mc.ApexClient, mc.AsyncApexClient])
async def test_a_repeated_submit_with_its_own_key_gets_the_first_job(
    server_target: str, client_type: type[mc.ApexClient] | type[mc.AsyncApexClient]
) -> None:
    client = client_type(api_key="sk-repeat", base_url=server_target, secure=False)
    try:
        first, again, other = mc.CallInfo(), mc.CallInfo(), mc.CallInfo()
        job = await settle(client.deep_research.submit(HI, idempotency_key="K", call_info=first))
        repeat = await settle(client.deep_research.submit(HI, idempotency_key="K", call_info=again))
        assert repeat.job_id == job.job_id
        assert REPLAYED not in first.trailing_metadata and REPLAYED in again.trailing_metadata
        # Another key is another job; a seed given by the caller is still the caller's.
        fresh = await settle(
            client.deep_research.submit(HI, idempotency_key="K2", seed=7, call_info=other)
        )
        assert fresh.job_id != job.job_id and REPLAYED not in other.trailing_metadata
        seeded = await settle(client.deep_research.submit(HI, idempotency_key="K2", seed=7))
        assert seeded.job_id == fresh.job_id
        with pytest.raises(mc.InvalidArgumentError, match="used with a different"):
            await settle(client.deep_research.submit(HI, idempotency_key="K2", seed=8))
    finally:
        await settle(client.close())
