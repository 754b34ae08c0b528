"""A client pointed at a loopback port where nothing listens is told to start `apex-grpc serve`.

The port is really closed (bound, then released), so the hint is checked on
the status grpc itself reports, for unary calls and streams on both clients.
"""

from __future__ import annotations

import pytest
from cli._helpers import closed_port

import apex_grpc as mc

from .conftest import KEY

USER = [{"role": "user", "content": "hello"}]


def expected_hint(port: int) -> str:
    return (
        f"nothing is listening on 127.0.0.1:{port}: to serve apex.v1 there, start the local "
        f"server (`apex-grpc serve --port {port} --api-key KEY`), or point the client at a "
        "running server"
    )


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "tls"])
def test_sync_client(secure: bool) -> None:
    port = closed_port()
    target = f"127.0.0.1:{port}"
    with mc.ApexClient(api_key=KEY, base_url=target, secure=secure, max_retries=0) as client:
        with pytest.raises(mc.UnavailableError) as unary:
            client.chats.list_sessions(timeout=5)
        stream = client.chat.completions.create(messages=USER, stream=True, timeout=5)
        with pytest.raises(mc.UnavailableError) as streamed:
            stream.text()
    for error in (unary.value, streamed.value):
        assert error.hint == expected_hint(port)
        assert str(error).endswith(f". {expected_hint(port)}")


async def test_async_client() -> None:
    port = closed_port()
    target = f"http://127.0.0.1:{port}"
    async with mc.AsyncApexClient(api_key=KEY, base_url=target, max_retries=0) as client:
        with pytest.raises(mc.UnavailableError) as unary:
            await client.chats.list_sessions(timeout=5)
        stream = await client.chat.completions.create(messages=USER, stream=True, timeout=5)
        with pytest.raises(mc.UnavailableError) as streamed:
            await stream.text()
    for error in (unary.value, streamed.value):
        assert error.hint == expected_hint(port)
