"""Admission: the key is checked from the metadata before any request body is read or parsed.

Each test sends the call on the wire the server sees, through grpc's generic
multi-callables: a request stream that never sends its one message shows
whether the server answered without reading it, and raw bytes show how it
answers a body that is not a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

pytestmark = pytest.mark.oldest

SERVICE = pb.DESCRIPTOR.services_by_name["ApexService"]
# A request stream that never yields: the call's one message is never sent.
NEVER = threading.Event()


def never_sent() -> Iterator[bytes]:
    NEVER.wait(30)
    yield b""


def identity(data: bytes) -> bytes:
    return data


def bodiless_call(
    channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...]
) -> grpc.RpcError:
    """Call `method` with its headers but never its request; returns how the server ended it."""
    path = f"/{SERVICE.full_name}/{method}"
    streaming = SERVICE.methods_by_name[method].server_streaming
    factory = channel.stream_stream if streaming else channel.stream_unary
    call = factory(path, request_serializer=identity, response_deserializer=identity)
    with pytest.raises(grpc.RpcError) as caught:
        result = call(never_sent(), metadata=metadata, timeout=5)
        if streaming:
            list(result)
    return caught.value


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_a_call_without_a_key_is_refused_before_its_body_is_read(
    channel: grpc.Channel, method: str
) -> None:
    started = time.monotonic()
    error = bodiless_call(channel, method, metadata=(("authorization", "Bearer wrong"),))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid API key"
    # Answered at once: a server that waited for the body would wait for the deadline.
    assert time.monotonic() - started < 2


def test_an_admitted_call_waits_for_its_body(channel: grpc.Channel, auth: tuple) -> None:
    """The other side of the test above: with a key, the server does wait for the request."""
    path = f"/{SERVICE.full_name}/ChatCompletion"
    call = channel.stream_unary(path, request_serializer=identity, response_deserializer=identity)
    with pytest.raises(grpc.RpcError) as caught:
        call(never_sent(), metadata=auth, timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11, b"\x0a\x02\xff\xfe"],
    ids=["bad tag", "truncated", "varint too long", "bad field 1 bytes"],
)
@pytest.mark.parametrize("method", ["ChatCompletion", "ChatCompletionStream", "WebRetrieval"])
def test_a_malformed_body_is_invalid_argument_after_the_key_check(
    channel: grpc.Channel, auth: tuple, method: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/{SERVICE.full_name}/{method}"
    streaming = SERVICE.methods_by_name[method].server_streaming
    factory = channel.unary_stream if streaming else channel.unary_unary
    call = factory(path, request_serializer=identity, response_deserializer=identity)

    def send(metadata: tuple) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            result = call(body, metadata=metadata, timeout=5)
            if streaming:
                list(result)
        return caught.value

    with caplog.at_level(logging.INFO, logger="apex_grpc_server"):
        unauthenticated = send(())
        malformed = send(auth)
        time.sleep(0.1)  # the log line is written as the handler ends
    assert unauthenticated.code() == grpc.StatusCode.UNAUTHENTICATED  # the key first
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    name = SERVICE.methods_by_name[method].input_type.full_name
    assert malformed.details().startswith(f"request: the body is not a valid {name} message (")
    assert len(malformed.details()) < 300
    logged = [r.getMessage() for r in caplog.records if r.name == "apex_grpc_server"]
    assert any(line.startswith(f"{path} INVALID_ARGUMENT ") for line in logged), logged
    assert any(line.startswith(f"{path} UNAUTHENTICATED ") for line in logged), logged
