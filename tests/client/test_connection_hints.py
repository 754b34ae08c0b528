"""A failure to connect to this machine says what to do: the hint on `UnavailableError`.

Both causes are real: TLS spoken to a plaintext server (the testing kit's fake),
and a loopback port where nothing listens (bound, then released). The hints
are checked on the statuses grpc itself reports, for unary calls and streams.
"""

from __future__ import annotations

import pytest
from cli._helpers import closed_port

import apex_grpc as mc
from apex_grpc.testing import FakeApex

from .conftest import KEY

USER = [{"role": "user", "content": "hello"}]


def failures(client: mc.ApexClient) -> list[mc.UnavailableError]:
    """The errors of a unary call and of a stream on `client`, which cannot connect."""
    with pytest.raises(mc.UnavailableError) as unary:
        client.chats.list_sessions(timeout=5)
    stream = client.chat.completions.create(messages=USER, stream=True, timeout=5)
    with pytest.raises(mc.UnavailableError) as streamed:
        stream.text()
    return [unary.value, streamed.value]


def nothing_listening(port: int) -> str:
    return (
        f"nothing is listening on 127.0.0.1:{port}: to serve apex.v1 there, start the local "
        f"server (`apex-grpc serve --port {port} --api-key KEY`), or point the client at a "
        "running server"
    )


def test_tls_to_a_plaintext_loopback_server_names_the_fix(apex_fake: FakeApex) -> None:
    with mc.ApexClient(api_key=KEY, base_url=apex_fake.target, max_retries=0) as tls_client:
        errors = failures(tls_client)
    for error in errors:
        assert error.hint is not None and apex_fake.target in error.hint
        for fix in ("secure=False", "MACROCOSMOS_USE_HTTPS=false", "http://"):
            assert fix in error.hint and fix in str(error)


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "tls"])
def test_a_closed_loopback_port_names_the_server_to_start(secure: bool) -> None:
    port = closed_port()
    target = f"127.0.0.1:{port}"
    with mc.ApexClient(api_key=KEY, base_url=target, secure=secure, max_retries=0) as client:
        errors = failures(client)
    for error in errors:
        assert error.hint == nothing_listening(port)
        assert str(error).endswith(f". {nothing_listening(port)}")


async def test_a_closed_loopback_port_names_the_server_to_start_on_the_async_client() -> None:
    port = closed_port()
    target = f"http://127.0.0.1:{port}"
    async with mc.AsyncApexClient(api_key=KEY, base_url=target, max_retries=0) as client:
        with pytest.raises(mc.UnavailableError) as unary:
            await client.chats.list_sessions(timeout=5)
        stream = await client.chat.completions.create(messages=USER, stream=True, timeout=5)
        with pytest.raises(mc.UnavailableError) as streamed:
            await stream.text()
    for error in (unary.value, streamed.value):
        assert error.hint == nothing_listening(port)
