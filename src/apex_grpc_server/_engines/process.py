"""Any engine in a child process the server supervises: a native crash costs calls, not the server.

The local engine runs llama.cpp, native code that can die of SIGSEGV (a build
for another CPU, a bad GGUF file) or be killed for memory. In the server's own
process that would take every RPC down; here it runs in a child process
(``child.py``; Ollama runs each model in a runner process, vLLM its EngineCore),
and ``ProcessEngine`` stands in for it in the server:

- Each call is a CHAT message with the whole ``ChatRequest``; its deltas come
  back one message each, as the engine makes them (``pipe``). A cancelled or
  abandoned call sends CANCEL, which stops the generation at its next token.
- When the child dies, the server learns it at once (its end of the socket
  closes). The calls it was answering end UNAVAILABLE with a
  ``grpc-retry-pushback-ms`` trailer saying when the engine should be back; so
  do calls that arrive while it is down. The engine is down for ``serving``
  listeners (the health service) until a new child is ready.
- The new child starts after a backoff (``Restarts``), so a crash loop costs a
  start now and then, not a core; every crash is logged with its cause and the
  delay, and counted (``restarts``, ``crashes``) for /metrics.

Why a subprocess on an inherited socket pair rather than ``multiprocessing``:
the child runs a module of this package by name, never re-imports the server's
``__main__`` (which ``spawn`` does, and which is a test runner or a user's
script), and no resource tracker or manager process comes along. One process
writes and one reads each direction, so a pickled tuple with a length in front
is the whole protocol; a delta costs one small write and one read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from apex_grpc_server._config import ServerConfig
from apex_grpc_server._engines.base import ChatEngine, ChatRequest, Delta, EngineUnavailable
from apex_grpc_server._engines.pipe import (
    ABORT,
    CANCEL,
    CHAT,
    DELTA,
    END,
    FAILED,
    START,
    EngineFacts,
    frame,
    read_message,
)
from apex_grpc_server._logging import logger
from apex_grpc_server._status import RpcAbort, retry_later

FIRST_DELAY_S = 0.5
"""The wait before restarting an engine process that died after a stable run."""
MAX_DELAY_S = 30.0
"""The longest wait between restarts: the delay doubles with each crash in a row up to this."""
STABLE_S = 60.0
"""A process that ran this long before it died starts the backoff over."""
EXIT_WAIT_S = 5.0
"""How long a stopping engine process may take to exit before it is killed."""
CHILD_MODULE = "apex_grpc_server._engines.child"
DIED = "died"
"""What a call's inbox gets when the process answering it is gone (with the reason)."""

Listener = Callable[[bool], Awaitable[None]]


def crash_reason(returncode: int | None) -> str:
    """How a process ended, for logs and metrics: ``SIGSEGV``, ``SIGKILL``, ``exit_1``."""
    if returncode is None:
        return "unresponsive"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal_{-returncode}"
    return f"exit_{returncode}"


@dataclasses.dataclass
class Restarts:
    """When to restart a crashed process: exponential backoff, capped, reset by a stable run."""

    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    stable_s: float = STABLE_S
    in_a_row: int = 0
    """Crashes since the last process that ran for ``stable_s``."""

    def delay_after_crash(self, uptime_s: float) -> float:
        """The wait before the next start, after a process that ran ``uptime_s`` died."""
        if uptime_s >= self.stable_s:
            self.in_a_row = 0
        self.in_a_row += 1
        delay: float = self.first_delay_s * 2 ** (self.in_a_row - 1)
        return min(self.max_delay_s, delay)


class _StartFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Child:
    """One engine process: its socket, and the calls it is answering (an inbox each)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        facts: EngineFacts,
        started: float,
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.facts = facts
        self.started = started
        self.calls: dict[int, asyncio.Queue[tuple[Any, ...]]] = {}
        self.ids = itertools.count()
        self.watch: asyncio.Task[None] | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(message))

    def end_calls(self, reason: str) -> int:
        """Tell every call in flight that this process is gone; how many there were."""
        calls, self.calls = self.calls, {}
        for inbox in calls.values():
            inbox.put_nowait((DIED, reason))
        return len(calls)


class ProcessEngine(ChatEngine):
    """``engine``, run in a child process that is restarted when it dies.

    ``engine`` is built (and its settings checked) in the server's process but
    never started there; the child builds its own from ``config``. ``restarts``
    counts processes started after the first, ``crashes`` the processes that
    ended unasked, by reason (``crash_reason``).
    """

    def __init__(self, engine: ChatEngine, config: ServerConfig) -> None:
        self.kind = engine.kind
        self._prototype = engine
        self._config = dataclasses.replace(
            config, engine_process=False, api_keys=frozenset(), database_url=None
        )
        self._facts = EngineFacts.of(engine)
        self._child: _Child | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._restarts = Restarts()
        self._back_at = 0.0  # loop time when the engine is expected to answer again
        self._start_s = 1.0  # how long the last start took, until one is measured
        self._last_crash = ""
        self._closing = False
        self.restarts = 0
        self.crashes: collections.Counter[str] = collections.Counter()

    @property
    def model(self) -> str:
        """The model the engine in the child reports."""
        return self._facts.model

    @property
    def concurrency(self) -> int | None:
        """The child's engine's concurrency (the server queues calls beyond it)."""
        return self._facts.concurrency

    @property
    def context_tokens(self) -> int | None:
        """The child's engine's context window."""
        return self._facts.context_tokens

    @property
    def expected_turn_s(self) -> float | None:
        """The child's engine's estimate of one completion's time."""
        return self._facts.expected_turn_s

    @property
    def serving(self) -> bool:
        """Whether an engine process is ready to answer (False while it restarts)."""
        return self._child is not None

    def watch_serving(self, listener: Listener) -> None:
        """Await ``listener(serving)`` whenever the engine process goes down or is back."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start the engine process and wait until its engine is ready (its model loaded).

        Raises EngineUnavailable when it cannot start: the server does not
        start either.
        """
        try:
            self._child = await self._launch()
        except _StartFailed as failure:
            raise EngineUnavailable(str(failure)) from None
        logger.info(
            "the %s engine runs in process %d (ready after %.1f s)",
            self.kind,
            self._child.process.pid,
            self._start_s,
        )
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        """Stop restarting; close the engine process's socket and wait for it to exit."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        child, self._child = self._child, None
        if child is not None:
            child.writer.close()
            await _reap(child.process, EXIT_WAIT_S)
            if child.watch is not None:
                await child.watch
        await self._prototype.close()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Send ``request`` to the engine process and yield its deltas as they arrive."""
        child = self._child
        if child is None:
            raise self._unavailable(
                f"the {self.kind} engine is restarting after its process ended ({self._last_crash})"
            )
        call_id = next(child.ids)
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        child.calls[call_id] = inbox
        child.send((CHAT, call_id, request))
        answered = False
        try:
            while True:
                message = await inbox.get()
                kind = message[0]
                if kind == DELTA:
                    delta: Delta = message[2]
                    answered = delta.finish is not None
                    yield delta
                    if answered:
                        return
                elif kind == END:
                    answered = True
                    return
                elif kind == ABORT:
                    answered = True
                    raise RpcAbort(grpc.StatusCode[message[2]], message[3], message[4])
                else:  # DIED
                    answered = True
                    raise self._unavailable(
                        f"the {self.kind} engine's process ended ({message[1]}) while"
                        " answering this call; the server is restarting it"
                    )
        finally:
            if child.calls.pop(call_id, None) is not None and not answered:
                child.send((CANCEL, call_id))  # stop generating what nobody reads

    def _unavailable(self, what: str) -> RpcAbort:
        """UNAVAILABLE, with the time until the engine is expected back as a retry hint."""
        now = asyncio.get_running_loop().time()
        wait_s = max(self._back_at - now, 0.0) + self._start_s
        return retry_later(grpc.StatusCode.UNAVAILABLE, what, max(10, round(wait_s * 1000)))

    async def _launch(self) -> _Child:
        """Start an engine process and wait for READY; _StartFailed says why it did not come."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.to_thread(_spawn, theirs.fileno())
        except OSError as error:
            ours.close()
            why = f"cannot start the engine process: {error}"
            raise _StartFailed("start_failed", why) from None
        except BaseException:  # cancelled: a process started meanwhile sees its socket close
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            writer.write(frame((START, self._config)))
            try:
                message = await read_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                reason = crash_reason(await _reap(process, EXIT_WAIT_S))
                raise _StartFailed(
                    reason, f"the {self.kind} engine's process ended ({reason}) while starting"
                ) from None
            if message[0] == FAILED:
                writer.close()
                await _reap(process, EXIT_WAIT_S)
                raise _StartFailed("start_failed", message[1])
        except BaseException:
            ours.close()
            if process.poll() is None:
                process.kill()
                await _reap(process, EXIT_WAIT_S)
            raise
        child = _Child(process, reader, writer, message[1], started)
        self._facts = child.facts
        self._start_s = loop.time() - started
        child.watch = loop.create_task(self._watch(child))
        return child

    async def _watch(self, child: _Child) -> None:
        """Hand each message to its call until the process's socket closes; then end its calls."""
        try:
            while True:
                message = await read_message(child.reader)
                inbox = child.calls.get(message[1])
                if inbox is not None:
                    inbox.put_nowait(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the process is gone, or closing
        except Exception:  # a message that does not unpickle: the process cannot be trusted
            logger.exception("the %s engine's process sent a broken message", self.kind)
            child.process.kill()
        child.writer.close()
        if self._closing:
            child.end_calls("the server is stopping")
            return
        reason = crash_reason(await _reap(child.process, EXIT_WAIT_S))
        uptime = asyncio.get_running_loop().time() - child.started
        delay = self._crashed(reason, uptime)
        ended = child.end_calls(reason)
        logger.error(
            "the %s engine's process %d ended (%s) after %.1f s, ending %d call(s) in flight;"
            " restarting it in %.1f s (crash %d in a row)",
            self.kind,
            child.process.pid,
            reason,
            uptime,
            ended,
            delay,
            self._restarts.in_a_row,
        )
        await self._tell(serving=False)

    def _crashed(self, reason: str, uptime_s: float) -> float:
        """Count a crash; the engine is down until a new process is ready (delay returned)."""
        self._child = None
        self.crashes[reason] += 1
        self._last_crash = reason
        delay = self._restarts.delay_after_crash(uptime_s)
        self._back_at = asyncio.get_running_loop().time() + delay
        return delay

    async def _supervise(self) -> None:
        """Each time the engine process ends unasked, start another after the backoff."""
        loop = asyncio.get_running_loop()
        while True:
            child = self._child
            assert child is not None
            assert child.watch is not None
            # wait(), not await: cancelling the supervisor must not cancel the watch.
            await asyncio.wait((child.watch,))
            while True:
                await asyncio.sleep(max(self._back_at - loop.time(), 0.0))
                self.restarts += 1
                try:
                    child = await self._launch()
                    break
                except _StartFailed as failure:
                    delay = self._crashed(failure.reason, 0.0)
                    logger.error(
                        "the %s engine's process did not start again: %s; next try in %.1f s"
                        " (crash %d in a row)",
                        self.kind,
                        failure,
                        delay,
                        self._restarts.in_a_row,
                    )
            self._child = child
            logger.warning(
                "the %s engine's process %d is back, ready after %.1f s (restart %d)",
                self.kind,
                child.process.pid,
                self._start_s,
                self.restarts,
            )
            await self._tell(serving=True)

    async def _tell(self, *, serving: bool) -> None:
        for listener in self._listeners:
            try:
                await listener(serving)
            except Exception:
                logger.exception("reporting the %s engine as serving=%s failed", self.kind, serving)


def _spawn(fd: int) -> subprocess.Popen[bytes]:
    """``python -m apex_grpc_server._engines.child FD``, running this copy of the package."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    return subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE, str(fd)],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the server's stdout is its own (export lines)
        env=env,
    )


async def _reap(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The process's return code once it has exited; it is killed past ``timeout_s``."""
    try:
        return await asyncio.to_thread(process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return await asyncio.to_thread(process.wait)
