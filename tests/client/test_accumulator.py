"""Folding stream chunks into a final response (pure)."""

from __future__ import annotations

import json

import pytest

import apex_grpc as mc
from apex_grpc._research import JobWatch, PollPolicy
from apex_grpc._streaming.accumulator import ChatCompletionAccumulator

pytestmark = pytest.mark.oldest


def chunk(
    content: str = "", *, role: str = "", finish: str = "", index: int = 0
) -> mc.ChatCompletionChunkResponse:
    return mc.ChatCompletionChunkResponse(
        id="cmpl-1",
        model="m",
        created=5,
        choices=[
            mc.ChunkChoice(
                index=index, delta=mc.ChoiceDelta(content=content, role=role), finish_reason=finish
            )
        ],
    )


def test_final_response_has_content_role_finish_reason_and_usage() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(chunk("Hel", role="assistant"))
    acc.add(chunk("lo"))
    last = chunk("!", finish="stop")
    last.usage.CopyFrom(mc.CompletionUsage(prompt_tokens=3, completion_tokens=3, total_tokens=6))
    acc.add(last)
    response = acc.response()
    assert acc.text() == "Hello!" and acc.finish_reason == "stop" and acc.chunk_count == 3
    assert (response.id, response.model, response.created, response.object) == (
        "cmpl-1",
        "m",
        5,
        "chat.completion",
    )
    (choice,) = response.choices
    assert choice.message.content == "Hello!" and choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert response.usage.total_tokens == 6


def test_many_chunks_fold_in_batches_without_losing_any() -> None:
    acc = ChatCompletionAccumulator()
    for i in range(1000):
        acc.add(chunk(f"{i},"))
    assert acc.chunk_count == 1000
    assert acc.text() == "".join(f"{i}," for i in range(1000))


def test_multiple_choices_stay_apart() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(chunk("a", index=0))
    acc.add(chunk("b", index=1))
    acc.add(chunk("c", index=0))
    assert acc.text(0) == "ac" and acc.text(1) == "b"
    assert [c.index for c in acc.response().choices] == [0, 1]


def test_empty_stream_gives_an_empty_response() -> None:
    response = ChatCompletionAccumulator().response()
    assert not response.choices


def test_the_first_id_model_created_and_role_win_and_refusals_are_joined() -> None:
    acc = ChatCompletionAccumulator()
    assert acc.finish_reason == "" and acc.text(3) == ""  # nothing yet, any choice
    acc.add(mc.ChatCompletionChunkResponse(choices=[mc.ChunkChoice(delta=mc.ChoiceDelta())]))
    acc.add(chunk("a", role="system"))
    late = mc.ChatCompletionChunkResponse(id="cmpl-2", model="m2", created=9)
    late.choices.add(delta=mc.ChoiceDelta(role="tool", refusal="I can"))
    acc.add(late)
    acc.add(
        mc.ChatCompletionChunkResponse(
            choices=[mc.ChunkChoice(delta=mc.ChoiceDelta(refusal="not"))]
        )
    )
    assert acc.finish_reason == "" and acc.text(1) == ""
    response = acc.response()
    assert (response.id, response.model, response.created) == ("cmpl-1", "m", 5)
    (choice,) = response.choices
    assert choice.message.role == "system" and choice.message.refusal == "I cannot"
    assert choice.finish_reason == ""


def test_a_choice_that_never_names_its_role_is_the_assistants() -> None:
    acc = ChatCompletionAccumulator()
    acc.add(chunk("hi"))
    (choice,) = acc.response().choices
    assert choice.message.role == "assistant" and choice.message.refusal == ""


def job(status: str, *seq: int, error: str | None = None) -> mc.GetDeepResearcherJobResponse:
    response = mc.GetDeepResearcherJobResponse(job_id="j", status=status)
    for s in seq:
        response.result.add(seq_id=s, chunk=json.dumps([{"content": f"part{s}"}]))
    if error is not None:
        response.error = error
    return response


def test_job_watch_yields_new_chunks_in_order_once() -> None:
    watch = JobWatch("j", timeout=None, policy=PollPolicy(initial=1, maximum=4, multiplier=2))
    assert watch.next_delay() == 0  # the first poll goes at once
    first = watch.update(job("running"))
    assert first.new_chunks == () and not first.done and first.status == "running"
    assert watch.next_delay() == 2
    second = watch.update(job("running", 2, 1))
    assert [c.seq_id for c in second.new_chunks] == [1, 2] and second.chunk_count == 2
    assert watch.next_delay() == 1
    last = watch.update(job("completed", 1, 2, 3))
    assert [mc.chunk_text(c) for c in last.new_chunks] == ["part3"]
    assert last.done and watch.done and last.response.status == "completed"
    assert watch.next_delay() is None  # over: no more polls, no failure


def test_job_watch_failure_and_timeout() -> None:
    watch = JobWatch("j", timeout=None, policy=PollPolicy())
    assert watch.update(job("failed", error="model exploded")).done
    with pytest.raises(mc.DeepResearchJobError, match="model exploded"):
        watch.next_delay()
    now = [0.0]
    slow = JobWatch("j", timeout=3, policy=PollPolicy(initial=1, maximum=1), clock=lambda: now[0])
    slow.update(job("running"))
    assert slow.next_delay() == 1
    with slow.polling({"metadata": {"a": "b"}}) as options:
        assert options == {"metadata": {"a": "b"}, "timeout": 3}
    now[0] = 3.5
    with pytest.raises(mc.DeepResearchTimeoutError):
        slow.next_delay()


def test_chunk_text_tolerates_non_json() -> None:
    assert mc.chunk_text(mc.DeepResearcherResultChunk(chunk="plain")) == "plain"
    assert mc.chunk_text(mc.DeepResearcherResultChunk(chunk='[{"content": "x"}]')) == "x"
