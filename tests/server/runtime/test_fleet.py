"""Two real servers (replicas) sharing one PostgreSQL database, over gRPC on loopback.

Skipped where PostgreSQL is not installed; failing instead on CI.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb


def fleet(start_server, postgres_url: str, count: int = 2, **overrides):
    """``count`` echo servers on one database, each with its own data directory."""
    settings = {"database_url": postgres_url, "job_poll_s": 0.1, "job_lease_s": 2.0}
    settings.update(overrides)
    return [start_server(**settings) for _ in range(count)]


def test_every_replica_lists_finds_and_edits_every_chat(
    start_server, connect, postgres_url, auth
) -> None:
    stubs = [connect(server.target) for server in fleet(start_server, postgres_url)]
    created = [
        stubs[i % 2]
        .CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt=f"zebra number {i}"), metadata=auth
        )
        .parsed_chat.id
        for i in range(10)
    ]
    for stub in stubs:
        sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth).chat_sessions
        assert {s.id for s in sessions} == set(created)
    found = stubs[1].SearchChatIdsByPromptAndCompletionText(
        pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term="zebra numb"), metadata=auth
    )
    assert set(found.chat_ids) == set(created)
    stubs[1].UpdateChatAttributes(
        pb.UpdateChatAttributesRequest(chat_id=created[0], attributes={"title": "renamed on B"}),
        metadata=auth,
    )
    sessions = stubs[0].GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth).chat_sessions
    assert {s.title for s in sessions if s.id == created[0]} == {"renamed on B"}


def test_a_job_is_read_on_every_replica_and_taken_over_when_its_server_stops(
    start_server, connect, postgres_url, auth
) -> None:
    (a,) = fleet(start_server, postgres_url, count=1)
    stub_a = connect(a.target)
    slow = (("x-echo-chunks", "1000"), ("x-echo-delay-ms", "20"))
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="fleet q")])
    job_id = stub_a.SubmitDeepResearcherJob(request, metadata=(*auth, *slow)).job_id
    ask = pb.GetDeepResearcherJobRequest(job_id=job_id)
    # B starts once A holds the job: a replica polling for jobs could otherwise claim it
    # first and run it without A's knobs (they live in A's call), finishing it at once.
    deadline = time.monotonic() + 10
    while stub_a.GetDeepResearcherJob(ask, metadata=auth).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (b,) = fleet(start_server, postgres_url, count=1)
    stub_b = connect(b.target)
    deadline = time.monotonic() + 10
    while not (job := stub_b.GetDeepResearcherJob(ask, metadata=auth)).result:
        assert time.monotonic() < deadline, job.status  # A runs it (with its knobs), B sees it
        time.sleep(0.05)
    assert job.status == "running"
    a.stop(grace=0)  # a clean stop releases the lease: B takes the job over at once
    deadline = time.monotonic() + 10
    while (job := stub_b.GetDeepResearcherJob(ask, metadata=auth)).status != "completed":
        assert time.monotonic() < deadline, job.status
        time.sleep(0.05)
    assert [chunk.seq_id for chunk in job.result] == list(range(len(job.result)))
    answer = "".join(json.loads(chunk.chunk)[0]["content"] for chunk in job.result)
    assert answer.startswith("Question: fleet q") and answer.count("Question:") == 1


def test_a_replica_with_an_unreachable_database_does_not_start(start_server) -> None:
    with pytest.raises(OSError, match=r"cannot connect to PostgreSQL at postgresql://x:\*\*\*@"):
        start_server(database_url="postgresql://x:pw@127.0.0.1:1/apex")


def test_the_database_url_is_checked_before_anything_starts(start_server) -> None:
    for url, message in [
        ("mysql://h/db", "database_url: unknown scheme 'mysql'"),
        ("sqlite://relative", "database_url: a SQLite URL is sqlite:///path/to/file"),
        ("postgresql:///db", "names no host"),
    ]:
        with pytest.raises(ValueError, match=message):
            start_server(database_url=url)


def test_concurrent_edits_through_two_replicas_keep_every_metadata_key(
    start_server, connect, postgres_url, auth
) -> None:
    stubs = [connect(server.target) for server in fleet(start_server, postgres_url)]
    completion_id = (
        stubs[0]
        .CreateChatAndCompletion(pb.CreateChatAndCompletionRequest(user_prompt="p"), metadata=auth)
        .parsed_completion.id
    )
    calls = []
    for n in range(20):
        update = pb.UpdateCompletionAttributesRequest(completion_id=completion_id)
        update.metadata.update({f"k{n}": n})
        calls.append(stubs[n % 2].UpdateCompletionAttributes.future(update, metadata=auth))
    for call in calls:
        assert call.code() == grpc.StatusCode.OK
    stored = stubs[1].GetChatCompletion(
        pb.GetChatCompletionRequest(completion_id=completion_id), metadata=auth
    )
    assert dict(stored.metadata) == {f"k{n}": n for n in range(20)}


def test_a_job_longer_than_its_lease_stays_with_the_replica_renewing_it(
    start_server, connect, postgres_url, auth
) -> None:
    a, b = fleet(start_server, postgres_url, job_lease_s=1.0)
    stub_a, stub_b = connect(a.target), connect(b.target)
    # 40 chunks 50 ms apart: twice the lease. B would take the job over (and run it
    # without A's knobs: 8 chunks) if A's heartbeat did not renew the lease.
    knobs = (("x-echo-chunks", "40"), ("x-echo-delay-ms", "50"))
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="long q")])
    job_id = stub_a.SubmitDeepResearcherJob(request, metadata=(*auth, *knobs)).job_id
    ask = pb.GetDeepResearcherJobRequest(job_id=job_id)
    deadline = time.monotonic() + 15
    while (job := stub_b.GetDeepResearcherJob(ask, metadata=auth)).status != "completed":
        assert time.monotonic() < deadline, job.status
        time.sleep(0.05)
    answer = "".join(json.loads(chunk.chunk)[0]["content"] for chunk in job.result)
    assert answer.startswith("Question: long q") and answer.count("Question:") == 1
    body = answer.rsplit("\n\nSources:\n[", 1)[0]  # without the sources listing
    assert len(body) == 40 * 16  # A's run, with its knobs
