"""The engine process: ``python -m apex_grpc_server._engines.child FD``, started by the server.

It reads the server's config from its end of the socket pair (file descriptor
FD), builds and starts the engine the config names, in this process, and then
answers CHAT messages with the engine's deltas as they come (see ``pipe``).
Each call runs in a task of its own; CANCEL cancels it, which stops the
engine's generation at its next token. The process ends when the server closes
the socket, or when the server itself is gone (the socket then closes too), so
it never outlives the server.

SIGINT and SIGTERM are ignored: Ctrl-C at a terminal and a process manager's
SIGTERM reach the whole process group, and the server must stop its engine
itself, after the calls in flight have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from typing import Any

import grpc

from apex_grpc_server._config import ServerConfig
from apex_grpc_server._engines import EngineUnavailable, create_engine
from apex_grpc_server._engines.base import ChatEngine, ChatRequest
from apex_grpc_server._engines.pipe import (
    ABORT,
    CANCEL,
    CHAT,
    DELTA,
    END,
    FAILED,
    READY,
    EngineFacts,
    frame,
    read_message,
)
from apex_grpc_server._status import RpcAbort

START_FAILED = 3
"""The exit status after telling the server why the engine cannot start."""


class _Answers:
    """The calls this process is answering, one task each, all writing to one socket."""

    def __init__(self, engine: ChatEngine, writer: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.writer = writer
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def send(self, message: tuple[Any, ...]) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(message))

    def start(self, call_id: int, request: ChatRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(call_id, request))
        self.tasks[call_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(call_id, None))

    def cancel(self, call_id: int) -> None:
        task = self.tasks.get(call_id)
        if task is not None:
            task.cancel()

    async def _answer(self, call_id: int, request: ChatRequest) -> None:
        try:
            async with contextlib.aclosing(self.engine.stream(request)) as deltas:
                async for delta in deltas:
                    self.send((DELTA, call_id, delta))
                    await self.writer.drain()
        except RpcAbort as abort:
            self.send((ABORT, call_id, abort.code.name, abort.details, abort.trailing_metadata))
        except Exception as error:  # the in-process engine would have made this INTERNAL too
            details = f"{self.engine.kind} engine: {error!r}"
            self.send((ABORT, call_id, grpc.StatusCode.INTERNAL.name, details, ()))
        else:
            self.send((END, call_id))

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def serve(sock: socket.socket) -> int:
    """Start the engine the server's config names and answer its calls until it hangs up."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    _, config = await read_message(reader)
    assert isinstance(config, ServerConfig)
    try:
        engine = create_engine(config)
        await engine.start()
    except (EngineUnavailable, OSError, ValueError) as error:
        writer.write(frame((FAILED, str(error))))
        await writer.drain()
        return START_FAILED
    writer.write(frame((READY, EngineFacts.of(engine))))
    answers = _Answers(engine, writer)
    try:
        while True:
            try:
                message = await read_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return 0  # the server closed its end, or is gone
            if message[0] == CHAT:
                answers.start(message[1], message[2])
            elif message[0] == CANCEL:
                answers.cancel(message[1])
    finally:
        await answers.close()
        await engine.close()
        writer.close()


def main(argv: list[str]) -> int:
    """Run the engine process on the inherited socket ``argv[1]`` (a file descriptor)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    return asyncio.run(serve(sock))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
