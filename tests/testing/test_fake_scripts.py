"""What a user scripts and reads back: searches, research jobs, stored chats, recorded calls."""

from __future__ import annotations

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, ScriptError, completion, error, search_results, stream

HI = [{"role": "user", "content": "Hi"}]
QUICK_POLLS = mc.PollPolicy(initial=0.01, maximum=0.02)

# Users on the oldest supported grpcio/protobuf test with the kit too.
pytestmark = pytest.mark.oldest


# unscripted calls fail loudly


@pytest.mark.apex_fake(assert_all_scripted=False)  # this test looks at the failure itself
def test_an_unscripted_call_fails_naming_the_method(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletion").reply("only chat is scripted")

    with pytest.raises(mc.UnimplementedError) as caught:
        apex_client.web_search.search("grpc testing")

    assert "nothing was scripted for WebRetrieval" in str(caught.value)
    assert 'search_query: "grpc testing"' in str(caught.value)
    assert [call.method for call in apex_fake.unscripted] == ["WebRetrieval"]
    apex_client.chat.completions.create(messages=HI)  # the scripted route still answers


@pytest.mark.apex_fake(assert_all_scripted=False)
async def test_an_unscripted_call_fails_naming_the_method_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    with pytest.raises(mc.UnimplementedError, match="nothing was scripted for GetChatSessions"):
        await async_apex_client.chats.list_sessions()
    assert apex_fake.calls_to("GetChatSessions")[0].route is None


def test_verify_lists_unscripted_calls_and_routes_never_called() -> None:
    with FakeApex() as fake, fake.client() as client:
        fake.on("WebRetrieval").reply(search_results())
        with pytest.raises(mc.UnimplementedError):
            client.chat.completions.create(messages=HI)
        with pytest.raises(AssertionError) as caught:
            fake.verify()
        fake.assert_all_called = fake.assert_all_scripted = False
    report = str(caught.value)
    assert "unscripted call: RecordedCall(ChatCompletion, UNIMPLEMENTED" in report
    assert "never called: Route(WebRetrieval" in report


# matching: order, predicates, one-shot routes, sequences


def test_routes_match_by_predicate_and_run_out_after_times(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    def asks_for_french(request: mc.ChatCompletionRequest) -> bool:
        return "French" in request.messages[-1].content

    apex_fake.on("ChatCompletion", match=asks_for_french).reply("Bonjour")
    apex_fake.on("ChatCompletion", times=1).reply("first")
    apex_fake.on("ChatCompletion").reply("second", "then always this")

    def ask(text: str) -> str:
        reply = apex_client.chat.completions.create(messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content

    assert ask("Hello") == "first"
    assert ask("Say it in French") == "Bonjour"
    assert [ask("Hello") for _ in range(3)] == ["second", "then always this", "then always this"]


@pytest.mark.apex_fake(assert_all_called=False)
def test_a_predicate_that_raises_fails_the_call_and_the_test(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletion", match=lambda request: request.no_such_field).reply("never")

    with pytest.raises(mc.InternalServerError, match="match predicate"):
        apex_client.chat.completions.create(messages=HI)
    with pytest.raises(AssertionError, match="AttributeError"):
        apex_fake.verify()
    apex_fake.reset()  # the failure was the point


def test_scripts_a_method_cannot_play_are_refused_at_once(apex_fake: FakeApex) -> None:
    with pytest.raises(ScriptError, match="ChatCompletion answers ChatCompletionResponse"):
        apex_fake.on("ChatCompletion").reply(search_results())
    with pytest.raises(ScriptError, match="ChatCompletionStream streams"):
        apex_fake.on("ChatCompletionStream").reply(completion("whole"))
    with pytest.raises(ScriptError, match="has no method 'Chat'"):
        apex_fake.on("Chat")
    with pytest.raises(ScriptError, match="unknown status code 'NOPE'"):
        error("NOPE")
    with pytest.raises(ScriptError, match="times=1"):
        apex_fake.on("ChatCompletion", times=1).reply("a", "b")
    with pytest.raises(ScriptError, match="delay must be seconds"):
        stream("a", delay=-1)
    apex_fake.reset()  # the routes made before each refusal were never meant to be called


# searches, research jobs, stored chats


def test_a_scripted_web_search(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    apex_fake.on("WebRetrieval").reply(
        search_results(("https://grpc.io", "gRPC is a high performance RPC framework"))
    )

    results = apex_client.web_search.search("what is grpc", n_results=1)

    assert [r.url for r in results.results] == ["https://grpc.io"]
    assert apex_fake.last_request.request.n_results == 1


def test_following_a_scripted_research_job(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    apex_fake.research_job(
        "job-7", statuses=["pending", "running"], chunks=["Part one. ", "Part two."]
    )

    job = apex_client.deep_research.submit(messages=HI)
    progress = list(apex_client.deep_research.follow(job.job_id, poll=QUICK_POLLS))

    assert [p.status for p in progress] == ["pending", "running", "running", "completed"]
    text = "".join(mc.chunk_text(c) for p in progress for c in p.new_chunks)
    assert text == "Part one. Part two."
    assert [c.request.job_id for c in apex_fake.calls_to("GetDeepResearcherJob")] == ["job-7"] * 4


async def test_a_failing_research_job_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.research_job("job-8", statuses=["running"], error="the miners timed out")

    job = await async_apex_client.deep_research.submit(messages=HI)
    with pytest.raises(mc.DeepResearchJobError, match="the miners timed out"):
        await async_apex_client.deep_research.wait(job.job_id, poll=QUICK_POLLS)


async def test_stored_chats_answer_as_scripted_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("GetChatSessions").reply(
        mc.GetChatSessionsResponse(chat_sessions=[mc.ChatSession(id="chat-1", title="Plans")])
    )

    sessions = await async_apex_client.chats.list_sessions(chat_type="apex")

    assert [s.title for s in sessions.chat_sessions] == ["Plans"]
    assert apex_fake.last_request.request.chat_type == "apex"


# what is recorded


def test_recorded_metadata_shows_the_key_to_asserts_but_not_in_reprs(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply("ok")

    with apex_fake.client(api_key="sk-user-secret", app_name="billing-bot") as client:
        client.chat.completions.create(messages=HI, metadata=[("x-tenant", "acme")])

    call = apex_fake.last_request
    assert call.api_key == "sk-user-secret"
    assert call.metadata["authorization"] == "Bearer sk-user-secret"
    assert call.metadata["x-source"] == "billing-bot"
    assert call.metadata.get_all("x-tenant") == ["acme"]
    for shown in (repr(call), repr(call.metadata), str(apex_fake.requests)):
        assert "sk-user-secret" not in shown
        assert "'authorization': '***'" in shown


def test_error_details_and_trailing_metadata_reach_the_client(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletion").reply(
        error(grpc.StatusCode.PERMISSION_DENIED, "no", trailing_metadata=[("x-request-id", "r-9")])
    )

    with pytest.raises(mc.PermissionDeniedError) as caught:
        apex_client.chat.completions.create(messages=HI)

    assert caught.value.request_id == "r-9"
