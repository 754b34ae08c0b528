"""Hypothesis-generated requests over the wire: no input crashes the server or its database."""

from __future__ import annotations

import sqlite3
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

pytestmark = pytest.mark.oldest

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

text = st.text(max_size=40) | st.sampled_from(
    ["", " ", '"', "NEAR(", "*", "é", "🚀", "\x00", "a" * 300]
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small = st.integers(min_value=-5, max_value=300) | int64
double = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.7, 1.0, 2.0])
role = st.sampled_from(["system", "user", "assistant", "robot", "", "USER"]) | text


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def fields(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each field either absent or drawn: presence matters for proto3 optional fields."""
    return st.fixed_dictionaries({}, optional=dict(strategies.items()))


sampling = st.builds(
    lambda f: pb.SamplingParameters(**f),
    fields(
        temperature=double,
        top_p=double,
        top_k=double,
        max_new_tokens=small,
        do_sample=st.booleans(),
    ),
)
chat_request = st.builds(
    lambda f: pb.ChatCompletionRequest(**f),
    fields(
        uids=st.lists(small, max_size=3),
        messages=st.lists(
            st.builds(lambda r, c: pb.ChatMessage(role=r, content=c), role, text), max_size=4
        ),
        seed=int64,
        task=text,
        model=text,
        test_time_inference=st.booleans(),
        mixture=st.booleans(),
        sampling_parameters=sampling,
        inference_mode=text,
        json_format=st.booleans(),
        stream=st.booleans(),
        timeout=small,
    ),
)
web_request = st.builds(
    lambda f: pb.WebRetrievalRequest(**f),
    fields(
        uids=st.lists(small, max_size=3),
        search_query=text,
        n_miners=small,
        n_results=small,
        max_response_time=small,
        timeout=small,
    ),
)
# Mostly valid requests with arbitrary text, to reach the engine, index and store.
prose = st.text(min_size=1, max_size=60).filter(str.strip)
valid_chat_request = st.builds(
    lambda messages, params, seed: pb.ChatCompletionRequest(
        messages=messages, sampling_parameters=params, seed=seed
    ),
    st.lists(
        st.builds(
            lambda r, c: pb.ChatMessage(role=r, content=c),
            st.sampled_from(["system", "user", "assistant"]),
            prose,
        ),
        min_size=1,
        max_size=4,
    ),
    st.builds(
        lambda t, p, k, m: pb.SamplingParameters(
            temperature=t, top_p=p, top_k=k, max_new_tokens=m, do_sample=True
        ),
        st.floats(0, 2),
        st.floats(0, 1),
        st.integers(0, 100).map(float),
        st.integers(0, 10_000),
    ),
    int64,
)
valid_web_request = st.builds(
    lambda q, n: pb.WebRetrievalRequest(search_query=q, n_results=n), prose, st.integers(1, 100)
)
ident = text | st.uuids().map(str)
json_value = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


CALLS = st.one_of(
    st.tuples(st.just("ChatCompletion"), valid_chat_request),
    st.tuples(st.just("ChatCompletionStream"), valid_chat_request),
    st.tuples(st.just("SubmitDeepResearcherJob"), valid_chat_request),
    st.tuples(st.just("WebRetrieval"), valid_web_request),
    st.tuples(
        st.just("CreateChatAndCompletion"),
        st.builds(lambda p: pb.CreateChatAndCompletionRequest(user_prompt=p), prose),
    ),
    st.tuples(st.just("ChatCompletion"), chat_request),
    st.tuples(st.just("ChatCompletionStream"), chat_request),
    st.tuples(st.just("SubmitDeepResearcherJob"), chat_request),
    st.tuples(st.just("WebRetrieval"), web_request),
    st.tuples(
        st.just("GetDeepResearcherJob"),
        st.builds(lambda i: pb.GetDeepResearcherJobRequest(job_id=i), ident),
    ),
    st.tuples(
        st.just("GetChatSessions"),
        st.builds(lambda t: pb.GetChatSessionsRequest(chat_type=t), text),
    ),
    st.tuples(
        st.just("GetStoredChatCompletions"),
        st.builds(lambda i: pb.GetStoredChatCompletionsRequest(chat_id=i), ident),
    ),
    st.tuples(
        st.just("GetChatCompletion"),
        st.builds(lambda i: pb.GetChatCompletionRequest(completion_id=i), ident),
    ),
    st.tuples(
        st.just("UpdateChatAttributes"),
        st.builds(
            lambda i, a: pb.UpdateChatAttributesRequest(chat_id=i, attributes=a),
            ident,
            st.dictionaries(st.sampled_from(["title", "chat_type"]) | text, text, max_size=3),
        ),
    ),
    st.tuples(
        st.just("DeleteChats"),
        st.builds(lambda i: pb.DeleteChatsRequest(chat_ids=i), st.lists(ident, max_size=3)),
    ),
    st.tuples(
        st.just("CreateChatAndCompletion"),
        st.builds(
            lambda f: pb.CreateChatAndCompletionRequest(**f),
            fields(user_prompt=text, chat_type=text, completion_type=text, title=text),
        ),
    ),
    st.tuples(
        st.just("CreateCompletion"),
        st.builds(
            lambda f: pb.CreateCompletionRequest(**f),
            fields(chat_id=ident, user_prompt=text, completion_type=text),
        ),
    ),
    st.tuples(
        st.just("DeleteCompletions"),
        st.builds(
            lambda i: pb.DeleteCompletionsRequest(completion_ids=i), st.lists(ident, max_size=3)
        ),
    ),
    st.tuples(
        st.just("SearchChatIdsByPromptAndCompletionText"),
        st.builds(lambda t: pb.SearchChatIdsByPromptAndCompletionTextRequest(search_term=t), text),
    ),
    st.tuples(
        st.just("UpdateCompletionAttributes"),
        st.builds(
            lambda f: pb.UpdateCompletionAttributesRequest(**f),
            fields(
                completion_id=ident,
                completion_text=text,
                user_prompt_text=text,
                metadata=st.dictionaries(text, json_value, max_size=3).map(struct),
            ),
        ),
    ),
    st.tuples(st.just("GetCompletionsWithDeepResearcherEntry"), st.just(empty_pb2.Empty())),
)


@pytest.fixture
def fuzz_server(start_server):
    return start_server(test_knobs=False, max_concurrent_jobs=1)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=CALLS)
def test_any_request_gets_a_clean_status(fuzz_server, auth, call) -> None:
    method, request = call
    with grpc.insecure_channel(fuzz_server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        code, details = grpc.StatusCode.OK, "ok"
        try:
            result = getattr(stub, method)(request, metadata=auth, timeout=30)
            if method == "ChatCompletionStream":
                list(result)
        except grpc.RpcError as error:
            code, details = error.code(), error.details()
    assert code in ALLOWED, (method, code, details)
    assert details


def test_server_survives_fuzzing_and_garbage(fuzz_server, auth, api_key) -> None:
    test_any_request_gets_a_clean_status(fuzz_server, auth)
    with grpc.insecure_channel(fuzz_server.target) as channel:
        # Raw bytes that are not a valid message of the request type.
        raw = channel.unary_unary("/apex.v1.ApexService/ChatCompletion")
        for garbage in (b"\xff\xff\xff", b"\x12\x05\x0a", b"\x0a\x80"):
            with pytest.raises(grpc.RpcError):
                raw(garbage, metadata=auth, timeout=10)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.ApexServiceStub(channel)
        request = pb.ChatCompletionRequest(
            messages=[pb.ChatMessage(role="user", content="still here?")]
        )
        assert stub.ChatCompletion(request, metadata=auth).choices[0].message.content
    data_dir = fuzz_server.config.data_dir
    fuzz_server.stop(grace=1)
    for name in ("apex.sqlite3", "index.sqlite3"):
        with sqlite3.connect(data_dir / name) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with sqlite3.connect(data_dir / "apex.sqlite3") as db:
        db.execute("INSERT INTO completions_fts(completions_fts) VALUES ('integrity-check')")
        orphans = db.execute(
            "SELECT count(*) FROM completions WHERE chat_id NOT IN (SELECT id FROM chats)"
        ).fetchone()
        assert orphans == (0,)
    assert api_key.encode() not in (data_dir / "apex.sqlite3").read_bytes()
