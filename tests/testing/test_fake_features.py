"""The kit's answers computed from the call, its deadline report, its connection options, raw
replies, and the environment that points clients built without arguments at it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, RecordedCall, ScriptError, completion, error, stream

pytestmark = pytest.mark.oldest


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def echo(call: RecordedCall) -> mc.ChatCompletionResponse:
    return completion(f"you said {call.request.messages[-1].content}")


# callable replies


def test_a_callable_reply_is_computed_from_each_call(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE"), echo)

    first = apex_client.chat.completions.create(messages=ask("one"))
    second = apex_client.chat.completions.create(messages=ask("two"))

    assert first.choices[0].message.content == "you said one"  # after a retry: a sequence
    assert second.choices[0].message.content == "you said two"
    assert len(apex_fake.calls_to("ChatCompletion")) == 3


async def test_a_callable_stream_reply_sees_the_metadata_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    def per_tenant(call: RecordedCall) -> object:
        tenant = call.metadata.get("x-tenant")
        if tenant is None:
            return error("PERMISSION_DENIED", "no tenant")
        return stream(f"hello {tenant}", " again")

    apex_fake.on("ChatCompletionStream").reply(per_tenant)

    chunks = await async_apex_client.chat.completions.create(
        messages=ask("hi"), stream=True, metadata=[("x-tenant", "t7")]
    )
    assert await chunks.text() == "hello t7 again"
    with pytest.raises(mc.PermissionDeniedError, match="no tenant"):
        await (
            await async_apex_client.chat.completions.create(messages=ask("hi"), stream=True)
        ).text()


def test_a_callable_reply_that_raises_fails_the_call_and_verify() -> None:
    with FakeApex() as fake, fake.client(max_retries=0) as client:
        fake.on("ChatCompletion").reply(lambda call: call.request.no_such_field)
        with pytest.raises(mc.InternalServerError, match=r"callable reply.*raised AttributeError"):
            client.chat.completions.create(messages=ask("hi"))
        with pytest.raises(AssertionError, match=r"the callable reply of Route.*AttributeError"):
            fake.verify()
        fake.reset()


def test_a_callable_reply_of_the_wrong_type_fails_naming_it() -> None:
    with FakeApex() as fake, fake.client(max_retries=0) as client:
        fake.on("WebRetrieval").reply(lambda call: completion("not a search"))
        with pytest.raises(mc.InternalServerError, match="answers WebRetrievalResponse, not"):
            client.web_search.search("q")
        with pytest.raises(AssertionError, match="WebRetrievalResponse"):
            fake.verify()
        fake.reset()


def test_bytes_are_sent_undecoded(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    # Field 1 (id, a string) carrying invalid UTF-8: no ChatCompletionResponse decodes it.
    apex_fake.on("ChatCompletion").reply(b"\x0a\x02\xff\xfe")

    with pytest.raises(mc.InternalServerError) as caught:
        apex_client.chat.completions.create(messages=ask("hi"), max_retries=0)

    assert "deserializ" in caught.value.details.lower()
    with pytest.raises(ScriptError, match="streams"):
        FakeApex().on("ChatCompletionStream").reply(b"\x0a")


# the deadline the fake reports


@pytest.mark.parametrize("side", ["sync", "async"])
def test_time_remaining_never_exceeds_the_clients_timeout(side: str) -> None:
    # grpc rounds a deadline up on the wire and may resend an earlier one up to 3 % longer
    # (10 s, then 9.9 s, arrives as 10.1 s twice); the fake reports at most what was asked.
    timeouts = [10, 9.9, 9.99, 0.999, 1.0, 3, 99.9, 100, 600, 0.3, 10.05, 9.5]
    seen: list[tuple[float, float | None]] = []
    with FakeApex() as fake:
        fake.on("GetChatSessions").reply(mc.GetChatSessionsResponse())
        if side == "sync":
            with fake.client() as client:
                for timeout in timeouts * 2:
                    client.chats.list_sessions(timeout=timeout)
                    seen.append((timeout, fake.last_request.time_remaining))
        else:

            async def run() -> None:
                async with fake.async_client() as client:
                    for timeout in timeouts * 2:
                        await client.chats.list_sessions(timeout=timeout)
                        seen.append((timeout, fake.last_request.time_remaining))

            asyncio.run(run())
    for timeout, remaining in seen:
        assert remaining is not None and remaining <= timeout, (timeout, remaining)
        # At most about 4 % under, less what the trip took on a busy machine.
        assert remaining >= timeout * 0.95 - 0.25, (timeout, remaining)


# the fake's connections


@pytest.mark.apex_fake(max_concurrent_streams=2)
def test_max_concurrent_streams_limits_each_connection(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion", delay=0.3).reply(echo)

    async def burst() -> list[mc.ChatCompletionResponse]:
        # One connection: six calls go through it two at a time, in three waves.
        async with apex_fake.async_client(max_connections=1) as client:
            calls = [client.chat.completions.create(messages=ask(f"q{i}")) for i in range(6)]
            return list(await asyncio.gather(*calls))

    answers = asyncio.run(burst())

    assert [a.choices[0].message.content for a in answers] == [f"you said q{i}" for i in range(6)]
    answered = [c for c in apex_fake.calls_to("ChatCompletion") if c.code is grpc.StatusCode.OK]
    assert len(answered) == 6 and len({call.peer for call in answered}) == 1
    spans = [(call.received_at, call.ended_at or 0.0) for call in answered]
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once == 2
    assert max(e for _, e in spans) - min(s for s, _ in spans) >= 0.85  # three waves of 0.3 s


def test_bad_connection_options_are_refused() -> None:
    with pytest.raises(ScriptError, match="max_concurrent_streams must be >= 1"):
        FakeApex(max_concurrent_streams=0)
    with pytest.raises(ScriptError, match="max_concurrent_streams must be an int"):
        FakeApex(max_concurrent_streams=True)


def test_server_options_reach_grpc() -> None:
    small = [("grpc.max_receive_message_length", 1024)]
    with FakeApex(server_options=small) as fake, fake.client(max_retries=0) as client:
        fake.on("ChatCompletion").reply("unused")
        with pytest.raises(mc.APIError) as caught:
            client.chat.completions.create(messages=ask("x" * 4096))
        assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        fake.reset()


# pointing clients built from the environment at the fake


def test_environ_names_the_fake_and_its_key() -> None:
    with FakeApex(api_key="sk-env") as fake:
        assert fake.environ() == {
            "MACROCOSMOS_BASE_URL": fake.target,
            "MACROCOSMOS_USE_HTTPS": "false",
            "APEX_API_KEY": "sk-env",
        }
    with pytest.raises(ScriptError, match="start the FakeApex first"):
        FakeApex().environ()
