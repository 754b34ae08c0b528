"""Transport and lifecycle: health, reflection, TLS, unix sockets, limits, shutdown, logs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import ServerConfig
from apex_grpc_server._runtime.drain import SETTLE_S
from apex_grpc_server._runtime.server import server_options

pytestmark = pytest.mark.oldest


def ask(text: str = "hi") -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)])


def test_health_needs_no_key(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "apex.v1.ApexService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) >= {
        "apex.v1.ApexService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = database.FindFileContainingSymbol("apex.v1.ApexService")
    assert described.package == "apex.v1"
    assert {method.name for method in described.service[0].method} >= {
        "ChatCompletion",
        "ChatCompletionStream",
        "GetCompletionsWithDeepResearcherEntry",
    }


def test_every_rpc_of_the_service_is_served(stub, auth) -> None:
    """No method answers UNIMPLEMENTED (requests are empty: INVALID_ARGUMENT is fine)."""
    service = pb.DESCRIPTOR.services_by_name["ApexService"]
    assert len(service.methods) == 16
    codes = {}
    for method in service.methods:
        request = method.input_type._concrete_class()
        try:
            result = getattr(stub, method.name)(request, metadata=auth)
            if method.server_streaming:
                list(result)
            codes[method.name] = grpc.StatusCode.OK
        except grpc.RpcError as error:
            codes[method.name] = error.code()
    assert set(codes.values()) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
    }, codes


def test_tls(start_server, tmp_path, auth) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_pem.write_to_path(str(key))
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    for pem in certificate.cert_chain_pems[1:]:
        with cert.open("ab") as chain:
            chain.write(pem.bytes())
    server = start_server(tls_cert=str(cert), tls_key=str(key))
    credentials = grpc.ssl_channel_credentials(authority.cert_pem.bytes())
    with grpc.secure_channel(
        server.target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    ) as secure:
        assert pb_grpc.ApexServiceStub(secure).ChatCompletion(ask(), metadata=auth).choices
    with grpc.insecure_channel(server.target) as plain, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.ApexServiceStub(plain).ChatCompletion(ask(), metadata=auth, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_unix_socket(start_server, connect, tmp_path, auth) -> None:
    path = tmp_path / "apex.sock"
    server = start_server(unix_socket=str(path))
    assert server.port == 0
    assert server.target == f"unix:{path}"
    assert connect(server.target).ChatCompletion(ask(), metadata=auth).choices


def test_ipv6_loopback(start_server, connect, auth) -> None:
    try:
        server = start_server(host="::1")
    except RuntimeError:
        pytest.skip("no IPv6 loopback here")
    assert server.target == f"[::1]:{server.port}"
    assert connect(server.target).ChatCompletion(ask(), metadata=auth).choices


def test_port_in_use_fails_before_anything_is_written(start_server, echo_server, tmp_path) -> None:
    data_dir = tmp_path / "never-created"
    with pytest.raises(RuntimeError, match="Failed to bind"):
        start_server(port=echo_server.port, data_dir=data_dir)
    assert not data_dir.exists()  # the port is bound before the data folder is made


@pytest.mark.parametrize("limit", [10, None])
def test_max_concurrent_streams_refuses_streams_past_the_limit(start_server, auth, limit) -> None:
    """30 streams at once on ONE connection: past a limit of 10 some are refused, else none."""
    server = start_server(max_concurrent_streams=limit)
    metadata = (*auth, ("x-echo-chunks", "5"), ("x-echo-delay-ms", "100"))

    async def burst() -> list[str]:
        # A fresh channel: its 30 streams go out before the server's SETTINGS arrive, as a
        # client's do when it does not know the limit (issue 12: RST_STREAM, REFUSED_STREAM).
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.ApexServiceStub(channel)

            async def one() -> str:
                try:
                    chunks = [c async for c in stub.ChatCompletionStream(ask(), metadata=metadata)]
                except grpc.RpcError as error:
                    return f"{error.code().name}: {error.details()}"
                return "OK" if len(chunks) == 5 else f"{len(chunks)} chunks"

            return await asyncio.gather(*(one() for _ in range(30)))

    if limit is None:
        assert asyncio.run(burst()) == ["OK"] * 30
        return
    # How many the client sends before it learns the limit varies: up to 5 fresh connections.
    refused: list[str] = []
    for _ in range(5):
        refused = asyncio.run(burst())
        if set(refused) != {"OK"}:
            break
    assert set(refused) != {"OK"}, "no stream was refused in 5 bursts of 30"
    for outcome in set(refused) - {"OK"}:  # REFUSED_STREAM (grpc's wording varies by version)
        assert outcome.startswith("UNAVAILABLE: ") and "RST_STREAM" in outcome
        assert "error code 7" in outcome


def test_oversized_messages_are_resource_exhausted(start_server, connect, auth) -> None:
    stub = connect(start_server(max_message_bytes=4096).target)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask("x" * 5000), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # An answer too large to send is refused too (and never built in memory).
    metadata = (*auth, ("x-echo-chunks", "1000"), ("x-echo-chunk-size", "100"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Streaming sends it in small pieces.
    assert len(list(stub.ChatCompletionStream(ask(), metadata=metadata))) == 1000


def test_default_limit_is_16_mib(stub, auth) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask("x" * (16 * 1024 * 1024 + 1)), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_keepalive_policy_matches_a_client_pinging_every_30s() -> None:
    options = dict(server_options(ServerConfig()))
    assert "grpc.max_concurrent_streams" not in options  # no limit unless asked for
    assert (
        dict(server_options(ServerConfig(max_concurrent_streams=100)))[
            "grpc.max_concurrent_streams"
        ]
        == 100
    )
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 30_000
    assert options["grpc.max_receive_message_length"] == 16 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 16 * 1024 * 1024
    assert options["grpc.so_reuseport"] == 0


def test_graceful_shutdown_lets_streams_finish(start_server, connect, auth) -> None:
    server = start_server(grace_period_s=5.0)
    stub = connect(server.target)
    metadata = (*auth, ("x-echo-chunks", "10"), ("x-echo-delay-ms", "100"))
    stream = stub.ChatCompletionStream(ask(), metadata=metadata)
    received = [next(stream)]
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    # Past the moment the stopping server closes its connections (it first turns new calls
    # away until none arrived for SETTLE_S), while the stream is still running.
    time.sleep(SETTLE_S + 0.4)
    # New calls are refused while the old one drains.
    with pytest.raises(grpc.RpcError) as caught:
        connect(server.target).ChatCompletion(ask(), metadata=auth, timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    received.extend(stream)
    stopper.join()
    assert len(received) == 10
    assert stream.code() == grpc.StatusCode.OK


def test_streams_past_the_grace_period_are_cut(start_server, connect, auth) -> None:
    server = start_server()
    stub = connect(server.target)
    metadata = (*auth, ("x-echo-chunks", "100"), ("x-echo-delay-ms", "100"))
    stream = stub.ChatCompletionStream(ask(), metadata=metadata)
    next(stream)
    started = time.monotonic()
    server.stop(grace=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(grpc.RpcError):
        list(stream)


def test_one_log_line_per_call_without_the_key(caplog, stub, auth, api_key) -> None:
    with caplog.at_level(logging.INFO, logger="apex_grpc_server"):
        _, call = stub.ChatCompletion.with_call(ask(), metadata=auth)
        with pytest.raises(grpc.RpcError):
            stub.ChatCompletion(pb.ChatCompletionRequest(), metadata=auth)
        with pytest.raises(grpc.RpcError):
            stub.ChatCompletion(ask(), metadata=(("authorization", "Bearer not-the-key"),))
        list(stub.ChatCompletionStream(ask(), metadata=auth))
        time.sleep(0.1)  # the stream's line is written as its handler finishes
    lines = [r.getMessage() for r in caplog.records if r.name == "apex_grpc_server"]
    calls = [line for line in lines if line.startswith("/apex.v1.ApexService/")]
    assert len(calls) == 4
    request_id = dict(call.trailing_metadata())["x-request-id"]
    assert any(
        line.startswith("/apex.v1.ApexService/ChatCompletion OK ") and request_id in line
        for line in calls
    )
    assert any(" INVALID_ARGUMENT " in line for line in calls)
    assert any(" UNAUTHENTICATED " in line for line in calls)
    assert any(line.startswith("/apex.v1.ApexService/ChatCompletionStream OK ") for line in calls)
    assert all("ms peer=" in line for line in calls)
    assert api_key not in caplog.text
    assert "not-the-key" not in caplog.text


def test_one_server_per_data_directory(start_server, tmp_path) -> None:
    import os

    from apex_grpc_server._runtime.datalock import DataDirectoryInUse

    first = start_server(data_dir=tmp_path)
    with pytest.raises(DataDirectoryInUse, match=rf"\(PID {os.getpid()}\)"):
        start_server(data_dir=tmp_path)
    first.stop()
    start_server(data_dir=tmp_path).stop()  # released at stop
