"""The openai engine against a fake OpenAI-compatible upstream on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._config import DEFAULT_MAX_NEW_TOKENS

ANSWER = ["Hello", " from", " the", " fake", " upstream"]


class FakeOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions and GET /v1/models; the prompt picks the behaviour."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fake-model"}, {"id": "other"}]})
        else:
            self._json(404, {"error": {"message": "no route"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        prompt = body["messages"][-1]["content"]
        words = ANSWER
        if body.get("continue_final_message"):  # as vLLM: only what follows the prefix
            prompt = body["messages"][-2]["content"]
            prefix = body["messages"][-1]["content"]
            done = next(i for i in range(len(ANSWER) + 1) if "".join(ANSWER[:i]) == prefix)
            words = ANSWER[done:]
        if prompt.startswith("error:"):
            status = int(prompt.split(":")[1])
            self._json(status, {"error": {"message": f"fake {status}"}}, {"retry-after": "2"})
            return
        if prompt.startswith("sleep:"):
            time.sleep(float(prompt.split(":")[1]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()

        def event(payload: Any) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        base = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
        self.wfile.write(b": keep-alive\n\n")
        event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for word in words:
            event({**base, "choices": [{"index": 0, "delta": {"content": word}}]})
            if prompt == "midstream-error":
                event({"error": {"message": "model crashed"}})
                return
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        event({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}})
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def apex(start_server, connect, upstream):
    FakeOpenAI.requests.clear()
    server = start_server(
        engine="openai",
        openai_base_url=upstream,
        openai_api_key="upstream-secret",
        openai_model="fake-model",
        openai_timeout_s=2.0,
    )
    return connect(server.target)


def ask(prompt: str, **fields: Any) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role="user", content=prompt)], **fields
    )


def test_stream_passes_through_deltas_and_usage(apex, auth) -> None:
    request = ask(
        "hi",
        seed=7,
        sampling_parameters=pb.SamplingParameters(
            temperature=0.5, top_p=0.9, max_new_tokens=4096, do_sample=True
        ),
    )
    chunks = list(apex.ChatCompletionStream(request, metadata=auth))
    assert [c.choices[0].delta.content for c in chunks] == [*ANSWER, ""]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 5)
    assert {c.model for c in chunks} == {"fake-model"}
    (sent,) = FakeOpenAI.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer upstream-secret"
    body = sent["body"]
    assert body["model"] == "fake-model"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["stream"] is True
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.5, 0.9, 7)
    assert body["max_tokens"] == DEFAULT_MAX_NEW_TOKENS  # clamped to ServerConfig.max_new_tokens
    assert "top_k" not in body


def test_unary(apex, auth) -> None:
    response = apex.ChatCompletion(
        ask("hi", sampling_parameters=pb.SamplingParameters(top_k=5, do_sample=False)),
        metadata=auth,
    )
    assert response.choices[0].message.content == "".join(ANSWER)
    assert response.usage.total_tokens == 16
    body = FakeOpenAI.requests[-1]["body"]
    assert (body["top_k"], body["temperature"]) == (5, 0.0)


def test_model_is_discovered_when_not_configured(start_server, connect, upstream, auth) -> None:
    FakeOpenAI.requests.clear()
    stub = connect(start_server(engine="openai", openai_base_url=upstream + "/v1").target)
    assert stub.ChatCompletion(ask("hi"), metadata=auth).choices[0].message.content
    assert FakeOpenAI.requests[-1]["body"]["model"] == "fake-model"
    assert "authorization" not in FakeOpenAI.requests[-1]["headers"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_upstream_errors_map_to_grpc_status(apex, auth, status, code) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(apex.ChatCompletionStream(ask(f"error:{status}"), metadata=auth))
    assert caught.value.code() == code
    assert caught.value.details() == f"upstream returned HTTP {status}: fake {status}"
    if status == 429:
        assert ("grpc-retry-pushback-ms", "2000") in caught.value.trailing_metadata()


def test_error_in_the_middle_of_the_stream(apex, auth) -> None:
    received = []
    call = apex.ChatCompletionStream(ask("midstream-error"), metadata=auth)
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(call)
    assert [c.choices[0].delta.content for c in received] == ["Hello"]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "upstream failed mid-stream: model crashed"


def test_upstream_timeout_is_deadline_exceeded(start_server, connect, upstream, auth) -> None:
    stub = connect(
        start_server(
            engine="openai", openai_base_url=upstream, openai_model="m", openai_timeout_s=0.3
        ).target
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask("sleep:1.5"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unreachable_upstream_is_unavailable(start_server, connect, auth) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    stub = connect(
        start_server(
            engine="openai", openai_base_url=f"http://127.0.0.1:{closed_port}", openai_model="m"
        ).target
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask("hi"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details().startswith("upstream unreachable: ConnectError")


def test_a_continuation_asks_the_upstream_to_continue_the_final_message(apex, auth) -> None:
    request = ask("hi")
    request.messages.add(role="assistant", content="Hello from")
    call = apex.ChatCompletionStream(request, metadata=(*auth, ("x-apex-continue", "1")))
    chunks = list(call)
    assert ("x-apex-continue", "1") in call.initial_metadata()
    assert [c.choices[0].delta.content for c in chunks] == [*ANSWER[2:], ""]
    assert not any(c.choices[0].delta.role for c in chunks)
    (sent,) = FakeOpenAI.requests
    body = sent["body"]
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello from"}
    plain = list(apex.ChatCompletionStream(ask("hi"), metadata=auth))  # no marker: as before
    assert "continue_final_message" not in FakeOpenAI.requests[-1]["body"]
    assert "".join(c.choices[0].delta.content for c in plain) == "".join(ANSWER)


def test_an_upstream_that_cannot_continue_refuses_a_resume_with_the_typed_error(
    start_server, upstream, api_key
) -> None:
    """A stream cut mid-answer (the x-echo-fail-* knobs: UNAVAILABLE after two chunks)
    resumes, and a server whose upstream cannot continue refuses: the client ends in
    StreamInterruptedError naming the refusal and how far the answer got."""
    import apex_grpc as mc

    server = start_server(
        engine="openai",
        openai_base_url=upstream,
        openai_model="fake-model",
        openai_continue=False,
        test_knobs=True,
    )
    cut = {"x-echo-fail-code": "UNAVAILABLE", "x-echo-fail-after": "2"}
    with mc.ApexClient(api_key=api_key, base_url=server.target, secure=False) as client:
        stream = client.chat.completions.create(
            messages=[{"role": "user", "content": "hi"}], stream=True, metadata=cut
        )
        with pytest.raises(mc.StreamInterruptedError) as caught:
            stream.text()
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "upstream cannot continue an answer" in caught.value.details
    assert "cut after 2 chunks (10 characters); resuming it failed" in str(caught.value)
