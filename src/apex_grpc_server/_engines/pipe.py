"""What the server and its engine process say to each other over their socket pair.

Every message is a tuple whose first item names it, pickled and sent with a
4-byte length in front. The socket pair is private to the two processes (the
child inherits its end; nothing else can connect), so pickle carries the
server's own dataclasses whole: a ``ChatRequest`` gains fields without this
module changing.

Server to engine process: START (the config, once, first), CHAT (a call id and
its ChatRequest), CANCEL (a call id). Closing the socket tells it to stop.
Engine process to server: READY (its ``EngineFacts``) or FAILED (why it cannot
start), then per call DELTA (each Delta as it comes), ABORT (the RpcAbort that
ended it, as code name, details and trailing metadata) or END (the engine's
stream ended).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from apex_grpc_server._engines.base import ChatEngine

START = "start"
CHAT = "chat"
CANCEL = "cancel"
READY = "ready"
FAILED = "failed"
DELTA = "delta"
ABORT = "abort"
END = "end"

HEADER = struct.Struct("!I")
"""The length of the pickled message that follows, in bytes."""


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """What the server needs to know of the engine running in the other process."""

    kind: str
    model: str
    concurrency: int | None
    context_tokens: int | None
    expected_turn_s: float | None

    @classmethod
    def of(cls, engine: ChatEngine) -> EngineFacts:
        """The facts ``engine`` reports about itself."""
        return cls(
            engine.kind,
            engine.model,
            engine.concurrency,
            engine.context_tokens,
            engine.expected_turn_s,
        )


def frame(message: tuple[Any, ...]) -> bytes:
    """``message`` as bytes on the socket: its length, then its pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; ``asyncio.IncompleteReadError`` once the other side is gone."""
    header = await reader.readexactly(HEADER.size)
    body = await reader.readexactly(HEADER.unpack(header)[0])
    message: tuple[Any, ...] = pickle.loads(body)
    return message
