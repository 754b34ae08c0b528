"""The local engine on the real SmolLM2-135M-Instruct model (marked llm: small max_new_tokens)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import RunningServer, ServerConfig, run_server

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    config = ServerConfig(
        port=0,
        engine="local",
        api_keys=frozenset({api_key}),
        data_dir=tmp_path_factory.mktemp("llm"),
        local_queue_size=0,
        n_ctx=1024,
    )
    with run_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def llm(local_server: RunningServer) -> Iterator[pb_grpc.ApexServiceStub]:
    with grpc.insecure_channel(local_server.target) as channel:
        yield pb_grpc.ApexServiceStub(channel)


def ask(prompt: str, max_new_tokens: int = 16, **fields) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role="user", content=prompt)],
        sampling_parameters=pb.SamplingParameters(
            temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens, do_sample=True
        ),
        **fields,
    )


def test_streams_real_tokens_with_usage(llm, auth) -> None:
    chunks = list(llm.ChatCompletionStream(ask("Name a colour.", seed=1), metadata=auth))
    text = "".join(c.choices[0].delta.content for c in chunks)
    assert text.strip()
    assert len(chunks) > 2  # token by token
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model == "SmolLM2-135M-Instruct"
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert 0 < last.usage.completion_tokens <= 16
    if last.choices[0].finish_reason == "length":
        assert last.usage.completion_tokens == 16
    assert last.usage.prompt_tokens > 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_seed_makes_sampling_reproducible(llm, auth) -> None:
    first = llm.ChatCompletion(ask("Write a poem.", seed=123), metadata=auth)
    second = llm.ChatCompletion(ask("Write a poem.", seed=123), metadata=auth)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage


def test_sdk_default_max_new_tokens_is_clamped_not_rejected(llm, auth) -> None:
    request = ask("Say yes.", max_new_tokens=4096, seed=3)
    response = llm.ChatCompletion(request, metadata=auth, timeout=60)
    assert response.usage.completion_tokens <= 1024


def test_busy_model_rejects_beyond_the_queue_and_cancel_frees_it(llm, auth) -> None:
    long_call = llm.ChatCompletionStream(
        ask("Tell a long story.", max_new_tokens=400), metadata=auth
    )
    stream = iter(long_call)
    next(stream)  # generating now
    with pytest.raises(grpc.RpcError) as caught:
        llm.ChatCompletion(ask("hi"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "local engine busy: 0 requests queued"
    long_call.cancel()
    started = time.monotonic()
    deadline = started + 5
    codes = []
    while time.monotonic() < deadline:  # the slot frees within a token or two of the cancel
        try:
            llm.ChatCompletion(ask("hi", max_new_tokens=4), metadata=auth)
            break
        except grpc.RpcError as error:
            codes.append(error.code())
            time.sleep(0.02)
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert time.monotonic() - started < 2


def test_prompt_longer_than_the_context_is_invalid_argument(llm, auth) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        llm.ChatCompletion(ask("lorem ipsum " * 800), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1024-token context" in caught.value.details()


def test_requests_queue_up_to_the_limit(tmp_path, api_key) -> None:
    config = ServerConfig(
        port=0,
        engine="local",
        api_keys=frozenset({api_key}),
        data_dir=tmp_path,
        local_queue_size=2,
        default_corpus=False,
    )
    auth = (("authorization", f"Bearer {api_key}"),)
    with run_server(config) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        results: list[grpc.StatusCode] = []

        def call() -> None:
            try:
                stub.ChatCompletion(ask("Count to three.", max_new_tokens=24), metadata=auth)
                results.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                results.append(error.code())

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
            time.sleep(0.02)
        for thread in threads:
            thread.join()
    # One runs, two wait, the rest are turned away.
    assert sorted(code.name for code in results) == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"] * 2
