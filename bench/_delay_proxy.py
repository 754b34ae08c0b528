"""A TCP proxy that adds network latency: each byte arrives `one_way` seconds after it left.

Loopback has no latency, so a client that pays round trips per call (a new
connection, a TLS handshake) looks as cheap as one that does not. The proxy
puts a wide-area link between client and server: every chunk of bytes is
forwarded `one_way` seconds after it was read, in each direction, without
holding back the chunks behind it (a delay line, not a queue of sleeps).

The kernel completes the TCP handshake with the proxy at once, so the
handshake's round trip is modelled: a new connection's first bytes leave
no earlier than one round trip after it was accepted, as a client's first
bytes leave one round trip (SYN, SYN-ACK) after it called connect().

It runs on an event loop in a thread of its own and records, per
connection, when each chunk was forwarded and which way, so the round trips
a client waited for can be counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

UP, DOWN = "client->server", "server->client"


@dataclass
class ConnectionLog:
    """One proxied connection: when it was accepted and what crossed it, in order."""

    accepted: float
    chunks: list[tuple[float, str, int]] = field(default_factory=list)
    """(time forwarded, direction, bytes) per chunk."""

    def flights(self) -> list[tuple[float, str, int]]:
        """Consecutive chunks going the same way merged: (first time, direction, bytes)."""
        merged: list[tuple[float, str, int]] = []
        for sent, direction, size in self.chunks:
            if merged and merged[-1][1] == direction:
                merged[-1] = (merged[-1][0], direction, merged[-1][2] + size)
            else:
                merged.append((sent, direction, size))
        return merged


class DelayProxy:
    """Forwards 127.0.0.1:<port> to `upstream` ("host:port") with `one_way` seconds each way."""

    def __init__(self, upstream: str, one_way: float) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.one_way = one_way
        self.connections: list[ConnectionLog] = []
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="delay-proxy", daemon=True
        )

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        """Accept connections until told to stop (runs on the proxy's own event loop)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopping.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log = ConnectionLog(time.monotonic())
        self.connections.append(log)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.close()
            return
        # The client's first bytes would leave one round trip after connect().
        handshake_done = log.accepted + 2 * self.one_way
        await asyncio.gather(
            self._pipe(reader, up_writer, log, UP, handshake_done),
            self._pipe(up_reader, writer, log, DOWN, 0.0),
            return_exceptions=True,
        )
        for side in (writer, up_writer):
            side.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: ConnectionLog,
        direction: str,
        not_before: float,
    ) -> None:
        """Read from `reader`; each chunk goes out to `writer` `one_way` seconds later."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(line, writer, log, direction))
        try:
            while data := await reader.read(65536):
                line.put_nowait((max(time.monotonic(), not_before) + self.one_way, data))
        finally:
            line.put_nowait((0.0, b""))  # end of stream, after what is in the line
            await sender

    async def _send(
        self,
        line: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        log: ConnectionLog,
        direction: str,
    ) -> None:
        while True:
            due, data = await line.get()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            log.chunks.append((time.monotonic(), direction, len(data)))
            writer.write(data)
            await writer.drain()
