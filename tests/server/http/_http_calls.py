"""A small raw HTTP client of the HTTP face, written from the protocols' specs (not connectrpc).

One call of an apex.v1 RPC over Connect (JSON or binary, unary or streaming) or
gRPC-Web, with httpx, returning what any client would make of it: the reply
messages, and the status code and message (gRPC code names, so gRPC and HTTP
answers compare directly).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

SERVICE = "apex.v1.ApexService"
PROTOCOLS = ("connect-json", "connect-proto", "grpc-web")
"""The HTTP face's protocols the parity suite runs (gRPC is the other face)."""
PAGE_ORIGIN = "http://127.0.0.1:9"
"""The one origin the test server lets in (CORS)."""
END_STREAM = 0x02
TRAILERS = 0x80


@dataclass
class Answer:
    """What one call came back with, protocol aside."""

    messages: list[Message] = field(default_factory=list)
    code: str = "OK"
    message: str = ""
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    """Trailing metadata: Connect unary ``trailer-*`` headers, a stream's end, gRPC-Web trailers."""


def envelope(data: bytes, flags: int = 0) -> bytes:
    """One length-prefixed message (Connect streaming and gRPC-Web)."""
    return struct.pack(">BI", flags, len(data)) + data


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """Split a streamed body into (flags, data) frames."""
    frames = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        frames.append((flags, body[5 : 5 + size]))
        body = body[5 + size :]
    return frames


def connect_code(name: str) -> str:
    """A Connect code ("invalid_argument", "canceled") as its gRPC name."""
    return "CANCELLED" if name == "canceled" else name.upper()


def grpc_code(number: str) -> str:
    """A grpc-status number as its name."""
    return next(code.name for code in grpc.StatusCode if code.value[0] == int(number))


def call(
    client: httpx.Client,
    protocol: str,
    method: str,
    request: Message,
    reply: type[Message],
    *,
    streaming: bool,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Call `method` with `request` over `protocol` (one of PROTOCOLS)."""
    url = f"/{SERVICE}/{method}"
    sent = dict(headers or {})
    binary = protocol != "connect-json"
    body = request.SerializeToString() if binary else json_format.MessageToJson(request).encode()
    if protocol == "grpc-web":
        sent.update({"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
        return _grpc_web(client.post(url, content=envelope(body), headers=sent), reply)
    codec = "proto" if binary else "json"
    if not streaming:
        sent["content-type"] = f"application/{codec}"
        sent["connect-protocol-version"] = "1"
        return _connect_unary(client.post(url, content=body, headers=sent), reply, binary)
    sent["content-type"] = f"application/connect+{codec}"
    return _connect_stream(client.post(url, content=envelope(body), headers=sent), reply, binary)


def _decode(data: bytes, reply: type[Message], binary: bool) -> Message:
    if binary:
        return reply.FromString(data)
    return json_format.Parse(data, reply(), ignore_unknown_fields=False)


def _connect_unary(response: httpx.Response, reply: type[Message], binary: bool) -> Answer:
    answer = Answer(http_status=response.status_code, headers=dict(response.headers))
    answer.metadata = {
        k.removeprefix("trailer-"): v
        for k, v in response.headers.items()
        if k.startswith("trailer-")
    }
    if response.status_code == 200:
        answer.messages.append(_decode(response.content, reply, binary))
        return answer
    assert response.headers["content-type"] == "application/json", response.text
    error = response.json()
    answer.code, answer.message = connect_code(error["code"]), error.get("message", "")
    return answer


def _connect_stream(response: httpx.Response, reply: type[Message], binary: bool) -> Answer:
    answer = Answer(http_status=response.status_code, headers=dict(response.headers))
    for flags, data in envelopes(response.content):
        if flags & END_STREAM:
            end: dict[str, Any] = json.loads(data)
            answer.metadata = {k: v[0] for k, v in end.get("metadata", {}).items()}
            if "error" in end:
                answer.code = connect_code(end["error"]["code"])
                answer.message = end["error"].get("message", "")
        else:
            answer.messages.append(_decode(data, reply, binary))
    return answer


def _grpc_web(response: httpx.Response, reply: type[Message]) -> Answer:
    answer = Answer(http_status=response.status_code, headers=dict(response.headers))
    trailers: dict[str, str] = {}
    if "grpc-status" in response.headers:  # a trailers-only answer
        trailers = dict(response.headers)
    for flags, data in envelopes(response.content):
        if flags & TRAILERS:
            for line in data.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            answer.messages.append(reply.FromString(data))
    answer.metadata = trailers
    answer.code = grpc_code(trailers["grpc-status"])
    answer.message = _percent_decoded(trailers.get("grpc-message", ""))
    return answer


def _percent_decoded(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)
