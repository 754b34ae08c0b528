"""The HTTP face as curl and a browser meet it: raw HTTP calls, errors in HTTP terms, CORS."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from _http_calls import END_STREAM, PAGE_ORIGIN, envelope, envelopes

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

CHAT = "/apex.v1.ApexService/ChatCompletion"
STREAM = "/apex.v1.ApexService/ChatCompletionStream"
HELLO = {"messages": [{"role": "user", "content": "hello"}]}
JSON = {"content-type": "application/json"}


def test_a_curl_json_call_answers(http: httpx.Client, bearer: dict[str, str]) -> None:
    response = http.post(CHAT, content=json.dumps(HELLO), headers={**JSON, **bearer})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["choices"][0]["message"]["content"].startswith("hellohello")
    assert answer["choices"][0]["finishReason"] == "stop"  # proto JSON names: lowerCamelCase
    assert len(response.headers["trailer-x-request-id"]) == 32


def test_a_streamed_answer_arrives_chunk_by_chunk_over_http11(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    # 4 chunks 250 ms apart: the first must reach the client while the rest are still coming.
    headers = {
        "content-type": "application/connect+json",
        "x-echo-chunks": "4",
        "x-echo-delay-ms": "250",
        **bearer,
    }
    arrivals: list[float] = []
    body = b""
    with http.stream(
        "POST", STREAM, content=envelope(json.dumps(HELLO).encode()), headers=headers
    ) as response:
        assert response.http_version == "HTTP/1.1"
        assert response.status_code == 200
        for piece in response.iter_raw():
            body += piece
            arrivals.append(time.monotonic())
    frames = envelopes(body)
    texts = [
        json.loads(data)["choices"][0]["delta"].get("content", "") for flags, data in frames[:-1]
    ]
    assert "".join(texts).startswith("hellohello")
    assert frames[-1][0] == END_STREAM
    assert json.loads(frames[-1][1]).get("error") is None
    # 3 delays of 250 ms lie between the first chunk and the last: >= 0.5 s leaves room for jitter.
    assert arrivals[-1] - arrivals[0] >= 0.5


def test_a_wrong_key_is_401_unauthenticated(http: httpx.Client) -> None:
    response = http.post(
        CHAT, content=json.dumps(HELLO), headers={**JSON, "authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": "invalid API key"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"messages": [', "Failed to load JSON"),
        ('{"mesages": []}', 'no field named "mesages"'),
        ('{"messages": 5}', "messages"),
        ('{"messages": []}', "messages"),
        (b"\xff\xfe", "apex.v1.ChatCompletionRequest"),
    ],
)
def test_bad_json_is_400_invalid_argument_naming_the_problem(
    http: httpx.Client, bearer: dict[str, str], body: str | bytes, named: str
) -> None:
    response = http.post(CHAT, content=body, headers={**JSON, **bearer})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["code"] == "invalid_argument"
    assert named in error["message"]


def test_resource_exhausted_is_429_with_a_retry_hint(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    knobs = {"x-echo-fail-code": "RESOURCE_EXHAUSTED", "x-echo-pushback-ms": "1500"}
    response = http.post(CHAT, content=json.dumps(HELLO), headers={**JSON, **bearer, **knobs})
    assert response.status_code == 429
    assert response.json()["code"] == "resource_exhausted"
    assert response.headers["retry-after"] == "2"
    assert response.headers["grpc-retry-pushback-ms"] == "1500"


def test_what_is_not_a_call_gets_no_html(http: httpx.Client, bearer: dict[str, str]) -> None:
    missing = http.post("/apex.v1.ApexService/NoSuchMethod", content=b"{}", headers=JSON)
    assert missing.status_code == 404
    assert "html" not in missing.headers.get("content-type", "")
    form = http.post(CHAT, content=b"a=b", headers={"content-type": "text/plain", **bearer})
    assert form.status_code == 415


def test_http2_cleartext_answers(two_faced: object, bearer: dict[str, str]) -> None:
    port = two_faced.http_port  # type: ignore[attr-defined]
    with httpx.Client(http1=False, http2=True, base_url=f"http://127.0.0.1:{port}") as client:
        response = client.post(CHAT, content=json.dumps(HELLO), headers={**JSON, **bearer})
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("hello")


def test_cors_lets_in_only_the_allowed_origin(http: httpx.Client, bearer: dict[str, str]) -> None:
    asked = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, connect-protocol-version",
    }
    allowed = http.options(CHAT, headers={"origin": PAGE_ORIGIN, **asked})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    assert "POST" in allowed.headers["access-control-allow-methods"]

    other = http.options(CHAT, headers={"origin": "http://evil.example", **asked})
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers

    call = http.post(
        CHAT, content=json.dumps(HELLO), headers={**JSON, **bearer, "origin": PAGE_ORIGIN}
    )
    assert call.headers["access-control-allow-origin"] == PAGE_ORIGIN
    exposed = call.headers["access-control-expose-headers"]
    for header in ("grpc-status", "grpc-message", "retry-after", "trailer-x-request-id"):
        assert header in exposed
    foreign = http.post(
        CHAT, content=json.dumps(HELLO), headers={**JSON, **bearer, "origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in foreign.headers


def test_no_origin_is_allowed_by_default(start_server: object, api_key: str) -> None:
    server = start_server(http_port=0)  # type: ignore[operator]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        preflight = client.options(
            CHAT,
            headers={"origin": "http://localhost:5173", "access-control-request-method": "POST"},
        )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


def test_binary_connect_round_trips_the_proto(http: httpx.Client, bearer: dict[str, str]) -> None:
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="bin")])
    response = http.post(
        CHAT,
        content=request.SerializeToString(),
        headers={"content-type": "application/proto", **bearer},
    )
    assert response.status_code == 200
    reply = pb.ChatCompletionResponse.FromString(response.content)
    assert reply.choices[0].message.content.startswith("binbin")


def test_a_refused_call_is_answered_after_its_body_and_keeps_the_connection(
    two_faced: object, api_key: str
) -> None:
    # As Node and browsers send a POST over HTTP/1.1: the headers, then the body. The key is
    # refused from the headers alone; had the server answered and closed there, the client
    # writing its body would meet a reset instead of the 401. The server reads the (small)
    # body first, so the answer arrives and the connection serves the next call.
    port = two_faced.http_port  # type: ignore[attr-defined]
    body = json.dumps(HELLO).encode()

    def head(key: str) -> bytes:
        return (
            f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        sock.sendall(head("wrong"))
        time.sleep(0.2)  # the server has the headers; the body is still to come
        sock.sendall(body)
        assert reader.readline().startswith(b"HTTP/1.1 401")
        _skip_response(reader)
        sock.sendall(head(api_key) + body)
        assert reader.readline().startswith(b"HTTP/1.1 200")


def _skip_response(reader: Any) -> None:
    """Read one chunked response's headers and body off `reader`."""
    while reader.readline() not in (b"\r\n", b""):
        pass
    while True:
        size = int(reader.readline().strip(), 16)
        reader.read(size + 2)
        if size == 0:
            return


def test_http_calls_are_counted_in_the_servers_metrics(start_server: Any, api_key: str) -> None:
    server = start_server(http_port=0, metrics_port=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        ok = client.post(
            CHAT, content=json.dumps(HELLO), headers={**JSON, "authorization": f"Bearer {api_key}"}
        )
        refused = client.post(
            CHAT, content=json.dumps(HELLO), headers={**JSON, "authorization": "Bearer no"}
        )
        assert (ok.status_code, refused.status_code) == (200, 401)
    scraped = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics").text
    calls = {
        line.split('rpc_grpc_status_code="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("rpc_server_duration_seconds_count")
        and '"apex.v1.ApexService/ChatCompletion"' in line
    }
    # The same series a gRPC call lands in: codes 0 (OK) and 16 (UNAUTHENTICATED).
    assert calls == {"0": 1.0, "16": 1.0}


HEALTH = "/grpc.health.v1.Health/Check"


def test_health_is_checked_over_http_without_a_key(http: httpx.Client) -> None:
    for service in ("", "apex.v1.ApexService"):
        response = http.post(HEALTH, content=json.dumps({"service": service}), headers=JSON)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "SERVING"}
    unknown = http.post(HEALTH, content=json.dumps({"service": "nope"}), headers=JSON)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


def test_a_draining_server_says_not_serving_over_http_and_still_answers(
    start_server: Any, api_key: str
) -> None:
    server = start_server(http_port=0, drain_delay_s=2.0, grace_period_s=1.0)
    stopping = threading.Thread(target=server.stop)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        stopping.start()
        deadline = time.monotonic() + 1.5  # within the drain delay
        status = ""
        while status != "NOT_SERVING" and time.monotonic() < deadline:
            status = client.post(HEALTH, content=b"{}", headers=JSON).json()["status"]
        assert status == "NOT_SERVING"
        # Calls still on their way are answered during the drain delay.
        answer = client.post(
            CHAT, content=json.dumps(HELLO), headers={**JSON, "authorization": f"Bearer {api_key}"}
        )
        assert answer.status_code == 200
    stopping.join()
