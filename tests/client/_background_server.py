"""The part the test servers share: an ApexService on 127.0.0.1 (a free port), served by
grpc.aio on an event loop of its own in a daemon thread, so sync tests can call it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

import grpc
import grpc.aio

from apex_grpc import _methods


class BackgroundServer:
    """Subclasses give the handlers (`_handlers`) and the grpc server options."""

    def __init__(self, options: list[tuple[str, Any]]) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Serve; returns once the server listens (the server itself, for chaining)."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop at once (calls in flight are cancelled) and end the thread."""
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's method handlers, by method name."""
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = grpc.aio.server(options=self._options)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_methods.SERVICE, self._handlers()),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
