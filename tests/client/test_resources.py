"""Every RPC of the service is reachable through the resources, on both clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc import _methods
from apex_grpc.testing import FakeApex

from .conftest import answer_every_rpc

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]

# RPC name -> how a user reaches it through a client's resources.
REACH: dict[str, Callable[[Any], Any]] = {
    "ChatCompletion": lambda c: c.chat.completions.create(messages=USER),
    "ChatCompletionStream": lambda c: c.chat.completions.create(messages=USER, stream=True),
    "WebRetrieval": lambda c: c.web_search.search(search_query="q"),
    "SubmitDeepResearcherJob": lambda c: c.deep_research.submit(USER),
    "GetDeepResearcherJob": lambda c: c.deep_research.get("job-1"),
    "GetChatSessions": lambda c: c.chats.list_sessions(),
    "GetStoredChatCompletions": lambda c: c.chats.list_completions("chat-1"),
    "GetChatCompletion": lambda c: c.chats.get_completion("cmpl-1"),
    "UpdateChatAttributes": lambda c: c.chats.update("chat-1", {"title": "t"}),
    "DeleteChats": lambda c: c.chats.delete(["chat-1"]),
    "CreateChatAndCompletion": lambda c: c.chats.create("prompt"),
    "CreateCompletion": lambda c: c.chats.create_completion("chat-1", "prompt"),
    "DeleteCompletions": lambda c: c.chats.delete_completions("cmpl-1"),
    "SearchChatIdsByPromptAndCompletionText": lambda c: c.chats.search("term"),
    "UpdateCompletionAttributes": lambda c: c.chats.update_completion(
        "cmpl-1", completion_text="x"
    ),
    "GetCompletionsWithDeepResearcherEntry": lambda c: c.chats.list_deep_research_completions(),
}


def test_the_table_covers_the_whole_service() -> None:
    assert set(REACH) == {m.name for m in _methods.ALL_METHODS}
    from apex_grpc_proto.apex.v1 import apex_pb2

    service = apex_pb2.DESCRIPTOR.services_by_name["ApexService"]
    assert {m.name for m in service.methods} == set(REACH)
    for method in _methods.ALL_METHODS:
        descriptor = service.methods_by_name[method.name]
        assert descriptor.input_type.full_name == method.request_type.DESCRIPTOR.full_name
        assert descriptor.output_type.full_name == method.response_type.DESCRIPTOR.full_name
        assert descriptor.server_streaming == method.server_streaming


@pytest.mark.apex_fake(assert_all_called=False)
@pytest.mark.parametrize("rpc", sorted(REACH))
def test_sync_client_reaches(client: mc.ApexClient, apex_fake: FakeApex, rpc: str) -> None:
    answer_every_rpc(apex_fake)
    result = REACH[rpc](client)
    if isinstance(result, mc.ChatCompletionStream):
        result.until_done()
    assert [s.method for s in apex_fake.requests] == [rpc]


@pytest.mark.apex_fake(assert_all_called=False)
@pytest.mark.parametrize("rpc", sorted(REACH))
async def test_async_client_reaches(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex, rpc: str
) -> None:
    answer_every_rpc(apex_fake)
    result = await REACH[rpc](aclient)
    if isinstance(result, mc.AsyncChatCompletionStream):
        await result.until_done()
    assert [s.method for s in apex_fake.requests] == [rpc]


@pytest.mark.apex_fake(assert_all_called=False)
def test_official_sdk_names_are_aliases(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    answer_every_rpc(apex_fake)
    client.deep_research.create_job(messages=USER)
    client.deep_research.get_job_results("job-1")
    client.completions.create(messages=USER)
    client.web_search.search(search_query="q", max_results_per_miner=4)
    assert [s.method for s in apex_fake.requests] == [
        "SubmitDeepResearcherJob",
        "GetDeepResearcherJob",
        "ChatCompletion",
        "WebRetrieval",
    ]
    assert apex_fake.requests[-1].request.n_results == 4


def test_deep_research_wait_and_stream(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    import json

    polls = apex_fake.on("GetDeepResearcherJob")
    states = [
        mc.GetDeepResearcherJobResponse(job_id="j", status="running"),
        mc.GetDeepResearcherJobResponse(
            job_id="j",
            status="running",
            result=[mc.DeepResearcherResultChunk(seq_id=1, chunk=json.dumps([{"content": "a"}]))],
        ),
        mc.GetDeepResearcherJobResponse(
            job_id="j",
            status="completed",
            result=[
                mc.DeepResearcherResultChunk(seq_id=1, chunk=json.dumps([{"content": "a"}])),
                mc.DeepResearcherResultChunk(seq_id=2, chunk=json.dumps([{"content": "b"}])),
            ],
        ),
    ]
    # The three polls of a job that completes, one of a failed job, then one running forever.
    polls.reply(
        *states,
        mc.GetDeepResearcherJobResponse(job_id="j", status="failed", error="no miners answered"),
        mc.GetDeepResearcherJobResponse(job_id="j", status="running"),
    )
    fast = mc.PollPolicy(initial=0.01, maximum=0.02)
    texts = [mc.chunk_text(c) for c in client.deep_research.stream("j", poll=fast)]
    assert texts == ["a", "b"]

    with pytest.raises(mc.DeepResearchJobError, match="no miners answered"):
        client.deep_research.wait("j", poll=fast)

    with pytest.raises(mc.DeepResearchTimeoutError):
        client.deep_research.wait("j", timeout=0.1, poll=fast)


def running_then_done() -> Iterator[mc.GetDeepResearcherJobResponse]:
    import json

    def chunk(seq: int) -> mc.DeepResearcherResultChunk:
        return mc.DeepResearcherResultChunk(seq_id=seq, chunk=json.dumps([{"content": f"p{seq}"}]))

    yield mc.GetDeepResearcherJobResponse(job_id="j", status="queued")
    yield mc.GetDeepResearcherJobResponse(job_id="j", status="running", result=[chunk(2), chunk(1)])
    yield mc.GetDeepResearcherJobResponse(
        job_id="j", status="completed", result=[chunk(1), chunk(2), chunk(3)]
    )


FAST_POLL = mc.PollPolicy(initial=0.01, maximum=0.02)


def test_deep_research_follow_reports_each_poll(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("GetDeepResearcherJob").reply(*running_then_done())
    updates = list(client.deep_research.follow("j", poll=FAST_POLL))
    assert [(u.status, u.chunk_count, u.done) for u in updates] == [
        ("queued", 0, False),
        ("running", 2, False),
        ("completed", 3, True),
    ]
    assert [[c.seq_id for c in u.new_chunks] for u in updates] == [[], [1, 2], [3]]
    assert len(apex_fake.calls_to("GetDeepResearcherJob")) == 3


async def test_async_deep_research_follow_shows_the_failure_then_raises(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    # A job that fails, then (polled again by `wait`) one that completes.
    apex_fake.on("GetDeepResearcherJob").reply(
        mc.GetDeepResearcherJobResponse(job_id="j", status="running"),
        mc.GetDeepResearcherJobResponse(job_id="j", status="failed", error="no miners"),
        *running_then_done(),
    )
    seen = []
    with pytest.raises(mc.DeepResearchJobError, match="no miners"):
        async for update in aclient.deep_research.follow("j", poll=FAST_POLL):
            seen.append((update.status, update.done))
    assert seen == [("running", False), ("failed", True)]
    final = await aclient.deep_research.wait("j", poll=FAST_POLL)
    assert final.status == "completed" and len(final.result) == 3


async def test_async_deep_research_wait(aclient: mc.AsyncApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("GetDeepResearcherJob").reply(
        lambda call: mc.GetDeepResearcherJobResponse(job_id=call.request.job_id, status="completed")
    )
    final = await aclient.deep_research.wait("j9", poll=mc.PollPolicy(initial=0.01, maximum=0.01))
    assert final.job_id == "j9"
    chunks = [c async for c in aclient.deep_research.stream("j9")]
    assert chunks == []
