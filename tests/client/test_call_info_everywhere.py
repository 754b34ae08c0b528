"""``call_info=`` works on every method of a unary RPC, on both clients.

Deep research submits a streamed chat request through the unary SubmitDeepResearcherJob;
its CallInfo is filled like any other unary call's (issue 25 item 9). Only the streamed
chat refuses it (test_calls.py), a stream having initial_metadata() and trailing_metadata().
"""

from __future__ import annotations

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._methods import ALL_METHODS
from apex_grpc.testing import FakeApex

from ._methods_table import VALID, bound, every_method, parameters
from .conftest import Client, answer_every_rpc, settle

pytestmark = pytest.mark.oldest

TAKING_CALL_INFO = [m for m in every_method() if "call_info" in parameters(m)]


def test_every_unary_rpc_has_methods_taking_call_info() -> None:
    assert len(TAKING_CALL_INFO) == 17  # 15 unary RPCs, two with the official SDK's alias too
    assert set(TAKING_CALL_INFO) <= set(VALID)


@pytest.mark.apex_fake(assert_all_called=False)
@pytest.mark.parametrize("method", TAKING_CALL_INFO)
async def test_call_info_is_filled(either_client: Client, apex_fake: FakeApex, method: str) -> None:
    answer_every_rpc(apex_fake)
    info = mc.CallInfo()
    await settle(bound(either_client, method)(**VALID[method], call_info=info))
    assert len(apex_fake.requests) == 1
    assert info.code is grpc.StatusCode.OK and info.attempts == 1
    assert info.request_id and ("x-request-id", info.request_id) in info.initial_metadata


@pytest.mark.apex_fake(assert_all_called=False)  # not the stream
async def test_every_unary_rpc_is_reached_with_call_info(
    either_client: Client, apex_fake: FakeApex
) -> None:
    answer_every_rpc(apex_fake)
    for method in TAKING_CALL_INFO:
        await settle(bound(either_client, method)(**VALID[method], call_info=mc.CallInfo()))
    reached = {seen.method for seen in apex_fake.requests}
    assert reached == {m.name for m in ALL_METHODS if not m.server_streaming}
