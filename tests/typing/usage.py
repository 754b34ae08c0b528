"""Type-checked by `mypy --strict` in `make lint`: the overloads and signatures users rely on.

Not run by pytest; a wrong return type or a missing overload fails the lint.
"""

from __future__ import annotations

from typing import assert_type

import apex_grpc as mc

MESSAGES: list[mc.MessageParam] = [{"role": "user", "content": "hi"}]


def sync_usage(client: mc.ApexClient) -> None:
    response = client.chat.completions.create(messages=MESSAGES)
    assert_type(response, mc.ChatCompletionResponse)
    content: str = response.choices[0].message.content

    stream = client.chat.completions.create(messages=MESSAGES, stream=True)
    assert_type(stream, mc.ChatCompletionStream)
    for chunk in stream:
        assert_type(chunk, mc.ChatCompletionChunkResponse)
        delta: str = chunk.choices[0].delta.content
    assert_type(stream.get_final_response(), mc.ChatCompletionResponse)
    assert_type(stream.text(), str)

    flag: bool = bool(content)
    either = client.chat.completions.create(messages=MESSAGES, stream=flag)
    assert_type(either, mc.ChatCompletionResponse | mc.ChatCompletionStream)

    typed = client.chat.completions.create(
        messages=[mc.ChatMessage(role="system", content="s")],
        sampling_parameters={"temperature": 0.2, "max_new_tokens": 64},
        seed=1,
        model="m",
        timeout=5.0,
        metadata={"x-trace": "1"},
        idle_timeout=2.0,
    )
    assert_type(typed, mc.ChatCompletionResponse)
    unresumed = client.chat.completions.create(messages=[], stream=True, resume=False)
    assert_type(unresumed, mc.ChatCompletionStream)

    results = client.web_search.search(search_query="q", n_results=3, max_response_time=20)
    assert_type(results, mc.WebRetrievalResponse)
    url: str = results.results[0].url

    job = client.deep_research.submit(MESSAGES)
    assert_type(job, mc.SubmitDeepResearcherJobResponse)
    assert_type(client.deep_research.wait(job.job_id, timeout=60), mc.GetDeepResearcherJobResponse)
    for piece in client.deep_research.stream(job.job_id):
        text: str = mc.chunk_text(piece)
    for progress in client.deep_research.follow(job.job_id, timeout=60):
        assert_type(progress, mc.JobProgress)
        assert_type(progress.new_chunks, tuple[mc.DeepResearcherResultChunk, ...])
        done: bool = progress.done and progress.chunk_count >= 0

    assert_type(client.chats.list_sessions(), mc.GetChatSessionsResponse)
    assert_type(client.chats.get_completion("c"), mc.StoredChatCompletion)
    assert_type(client.with_options(timeout=3), mc.ApexClient)
    assert_type(client.chats.delete("c", idempotency_key="k-1"), mc.DeleteChatsResponse)
    patient = mc.RetryPolicy(max_pushback=5.0)
    try:
        client.chats.list_completions("c", retry=patient)
    except mc.MessageTooLargeError as error:
        assert_type(error.hint, str | None)
    print(delta, url, text, done)


async def async_usage(client: mc.AsyncApexClient) -> None:
    response = await client.chat.completions.create(messages=MESSAGES)
    assert_type(response, mc.ChatCompletionResponse)

    stream = await client.chat.completions.create(messages=MESSAGES, stream=True)
    assert_type(stream, mc.AsyncChatCompletionStream)
    async for chunk in stream:
        assert_type(chunk, mc.ChatCompletionChunkResponse)
    assert_type(await stream.get_final_response(), mc.ChatCompletionResponse)

    assert_type(await client.web_search.search(search_query="q"), mc.WebRetrievalResponse)
    assert_type(
        await client.chats.search("term"), mc.SearchChatIdsByPromptAndCompletionTextResponse
    )
    async for piece in client.deep_research.stream("job"):
        assert_type(piece, mc.DeepResearcherResultChunk)
    async for update in client.deep_research.follow("job"):
        assert_type(update.status, str)
    created = await client.chats.create("hi", idempotency_key="k-2")
    assert_type(created, mc.CreateChatAndCompletionResponse)
    assert_type(client.with_options(max_retries=0), mc.AsyncApexClient)
    await client.aclose()


def testing_kit_usage() -> None:
    """apex_grpc.testing as a user's tests type-check against it."""
    from apex_grpc.testing import FakeApex, RecordedCall, Route, completion, error, stream

    with FakeApex(assert_all_called=False) as fake:
        route = fake.on("ChatCompletion", match=lambda request: True, times=2, delay=0.1)
        assert_type(
            route.reply(error("UNAVAILABLE", retry_pushback_ms=10), completion("ok")), Route
        )
        fake.on("ChatCompletionStream").reply(stream("a", "b", delay=0.01))
        assert_type(fake.client(), mc.ApexClient)
        assert_type(fake.async_client(), mc.AsyncApexClient)
        assert_type(fake.last_request, RecordedCall)
        assert_type(fake.calls_to("ChatCompletion"), list[RecordedCall])
        key: str | None = fake.requests[0].api_key
        ended: bool = fake.requests[0].wait_ended(1.0)
        print(key, ended, route.call_count)
