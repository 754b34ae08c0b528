"""A TCP proxy of our own, on loopback, that can pass, delay, black-hole or reset traffic.

It sits between a client and a server to make the faults production brings:
slow links, connections that go silent, and connections reset mid-stream.
It also counts the bytes it forwards each way (to see compression on the wire)
and can keep a copy of what went upstream (to see what a client sends).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Proxy:
    """Forwards 127.0.0.1:<port> to `upstream_port`; change `mode` any time."""

    def __init__(self, upstream_port: int, *, record: bool = False) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"  # pass | delay | blackhole
        self.delay_s = 0.0
        self.bytes_up = 0
        self.bytes_down = 0
        self.record = record
        self.upstream_bytes = bytearray()
        self.connections = 0
        self._pairs: list[_Pair] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset_all(self) -> int:
        """Abort every open connection with a TCP RST; returns how many."""
        return self._call(self._reset())

    def _call(self, coro: object) -> int:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _rst(writer)
            return
        pair = _Pair(writer, up_writer)
        self._pairs.append(pair)
        pair.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, writer, upstream=False)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()
        if pair in self._pairs:
            self._pairs.remove(pair)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            while self.mode == "blackhole":  # noqa: ASYNC110 (mode is set from other threads)
                await asyncio.sleep(0.01)
            if self.mode == "delay" and self.delay_s:
                await asyncio.sleep(self.delay_s)
            if upstream:
                self.bytes_up += len(data)
                if self.record:
                    self.upstream_bytes.extend(data)
            else:
                self.bytes_down += len(data)
            writer.write(data)
            await writer.drain()

    async def _reset(self) -> int:
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for task in pair.tasks:
                task.cancel()
            _rst(pair.client)
            _rst(pair.upstream)
        return len(pairs)

    async def _shutdown(self) -> int:
        self._server.close()
        count = await self._reset()
        await self._server.wait_closed()
        return count


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
