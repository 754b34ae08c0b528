"""Security: TLS by default and verified, the key never in plaintext to a remote host,
never in a repr, a log line or an error, and one key never sees another's chats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import trustme

import apex_grpc as mc

pytestmark = pytest.mark.oldest
SECRET = "sk-live-DO-NOT-LEAK-31415"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA, start_server: Any, tmp_path: Path, api_key: str) -> Any:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return start_server(tls_cert=str(chain), tls_key=str(key))


def test_tls_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MACROCOSMOS_USE_HTTPS", raising=False)
    monkeypatch.delenv("MACROCOSMOS_BASE_URL", raising=False)
    with mc.ApexClient(api_key="k") as client:
        assert client.secure is True
    with mc.ApexClient(api_key="k", base_url="127.0.0.1:1") as client:
        assert client.secure is True


def test_tls_to_a_plaintext_server_fails_cleanly(echo_target: str, api_key: str) -> None:
    with mc.ApexClient(api_key=api_key, base_url=echo_target, max_retries=0) as client:
        with pytest.raises(mc.UnavailableError):
            client.chat.completions.create(messages=user("hi"), timeout=5)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_trusted_ca_connects(
    tls_server: Any, ca: trustme.CA, api_key: str, kind: str
) -> None:
    tls = mc.TLSConfig(root_certificates=ca.cert_pem.bytes())
    target = f"localhost:{tls_server.port}"
    if kind == "sync":
        with mc.ApexClient(api_key=api_key, base_url=target, tls=tls) as client:
            assert client.chat.completions.create(messages=user("over tls")).choices
    else:
        async with mc.AsyncApexClient(api_key=api_key, base_url=target, tls=tls) as aclient:
            assert (await aclient.chat.completions.create(messages=user("over tls"))).choices


def test_wrong_hostname_and_untrusted_ca_fail(
    tls_server: Any, ca: trustme.CA, api_key: str
) -> None:
    right = mc.TLSConfig(root_certificates=ca.cert_pem.bytes())
    wrong_name = mc.TLSConfig(
        root_certificates=ca.cert_pem.bytes(), server_hostname="wrong.example"
    )
    other_ca = mc.TLSConfig(root_certificates=trustme.CA().cert_pem.bytes())
    target = f"127.0.0.1:{tls_server.port}"
    with mc.ApexClient(api_key=api_key, base_url=target, tls=right) as client:
        assert client.chat.completions.create(messages=user("ip san")).choices
    for tls in (wrong_name, other_ca):
        with mc.ApexClient(api_key=api_key, base_url=target, tls=tls, max_retries=0) as client:
            with pytest.raises(mc.UnavailableError):
                client.chat.completions.create(messages=user("no"), timeout=5)


def test_no_plaintext_channel_is_ever_opened_to_a_remote_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(grpc, "insecure_channel", lambda target, **kw: opened.append(target))
    monkeypatch.setattr(grpc.aio, "insecure_channel", lambda target, **kw: opened.append(target))
    for remote in ("10.20.30.40:50051", "example.com:80", "ipv4:127.0.0.1:1,192.0.2.7:1"):
        with pytest.raises(mc.InsecureTransportError) as caught:
            mc.ApexClient(api_key=SECRET, base_url=remote, secure=False)
        assert SECRET not in str(caught.value)
        with pytest.raises(mc.InsecureTransportError):
            mc.AsyncApexClient(api_key=SECRET, base_url=remote, secure=False)
    assert opened == []


def test_the_key_travels_encrypted_under_tls(
    tls_server: Any, ca: trustme.CA, api_key: str, proxy: Any
) -> None:
    wire = proxy(tls_server.port, record=True)
    tls = mc.TLSConfig(root_certificates=ca.cert_pem.bytes(), server_hostname="localhost")
    with mc.ApexClient(api_key=api_key, base_url=wire.target, tls=tls) as client:
        client.chat.completions.create(messages=user("secret stuff"))
    assert wire.bytes_up > 0
    assert api_key.encode() not in bytes(wire.upstream_bytes)
    assert b"Bearer" not in bytes(wire.upstream_bytes)


def test_key_never_in_repr_str_or_errors(echo_target: str) -> None:
    client = mc.ApexClient(api_key=SECRET, base_url=echo_target, secure=False, max_retries=0)
    settings = client.settings
    shown = [repr(client), str(client), repr(client.with_options(timeout=3)), repr(settings)]
    shown += [str(settings), repr(settings.call_defaults), str(settings.call_defaults)]
    info = mc.CallInfo()
    with pytest.raises(mc.AuthenticationError) as caught:
        client.chats.list_sessions(call_info=info)
    shown += [str(caught.value), repr(caught.value), repr(info), str(caught.value.__cause__)]
    stream = client.chat.completions.create(messages=user("x"), stream=True)
    shown.append(repr(stream))
    with pytest.raises(mc.AuthenticationError) as streamed:
        stream.until_done()
    shown += [str(streamed.value), repr(streamed.value)]
    client.close()
    for text in shown:
        assert SECRET not in text


def test_key_never_in_logs_even_at_debug(echo_target: str, tmp_path: Path) -> None:
    script = f"""
import apex_grpc as mc
client = mc.ApexClient(api_key={SECRET!r}, base_url={echo_target!r}, secure=False, max_retries=1)
messages = [{{"role": "user", "content": "x"}}]
for call in (
    lambda: client.chats.list_sessions(),
    lambda: client.chat.completions.create(messages=messages, stream=True).until_done(),
):
    try:
        call()
    except mc.ApexError as error:
        print("error:", error, repr(error))
"""
    env = {**os.environ, "APEX_GRPC_LOG": "debug", "GRPC_VERBOSITY": "debug"}
    env.pop("GRPC_TRACE", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "UNAUTHENTICATED" in out.stdout and "rpc /apex.v1.ApexService" in out.stderr
    assert SECRET not in out.stdout and SECRET not in out.stderr


def test_missing_or_wrong_key_is_rejected(echo_target: str, api_key: str) -> None:
    channel = grpc.insecure_channel(echo_target)
    from apex_grpc_proto.apex.v1 import apex_pb2, apex_pb2_grpc

    stub = apex_pb2_grpc.ApexServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raw:
        stub.GetChatSessions(apex_pb2.GetChatSessionsRequest())
    assert raw.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    channel.close()
    with mc.ApexClient(api_key=api_key + "x", base_url=echo_target, secure=False) as client:
        with pytest.raises(mc.AuthenticationError, match="invalid API key"):
            client.chats.list_sessions()


def test_one_key_never_sees_another_keys_chats(start_server: Any) -> None:
    server = start_server(api_keys=frozenset({"key-a", "key-b"}))
    alice = mc.ApexClient(api_key="key-a", base_url=server.target, secure=False)
    bob = alice.with_options(api_key="key-b")
    created = alice.chats.create("the launch codes are 0000")
    chat_id = created.parsed_chat.id
    completion_id = created.parsed_completion.id
    assert chat_id not in [s.id for s in bob.chats.list_sessions().chat_sessions]
    assert bob.chats.search("launch").chat_ids == []
    with pytest.raises(mc.NotFoundError):
        bob.chats.list_completions(chat_id)
    with pytest.raises(mc.NotFoundError):
        bob.chats.get_completion(completion_id)
    with pytest.raises(mc.NotFoundError):
        bob.chats.delete(chat_id)
    with pytest.raises(mc.NotFoundError):
        bob.chats.update(chat_id, {"title": "pwned"})
    assert alice.chats.get_completion(completion_id).user_prompt_text == "the launch codes are 0000"
    assert chat_id in alice.chats.search("launch").chat_ids
    alice.close()
