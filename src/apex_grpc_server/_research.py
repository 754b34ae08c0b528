"""Deep-research jobs: retrieve, read, synthesise, in the background, persisted as they go."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time

import grpc

from apex_grpc_server._chat import ChatCompletions
from apex_grpc_server._engines import ChatRequest, Message
from apex_grpc_server._knobs import Knobs
from apex_grpc_server._search import SearchHit, SearchIndex, SearchTimeout
from apex_grpc_server._status import RpcAbort
from apex_grpc_server._store import CompletionRow, JobRow, Store, default_title
from apex_grpc_server._validation import ChatCall

logger = logging.getLogger("apex_grpc_server")

RESTART_REASON = "interrupted by a server restart"
SHUTDOWN_REASON = "interrupted by a server shutdown"
SOURCES = 4
PASSAGE_CHARS = 700
SEARCH_BUDGET_S = 10.0
FLUSH_CHARS = 200
FLUSH_SECONDS = 0.5
SYSTEM_PROMPT = (
    "You are a careful research assistant. Answer the question using the numbered "
    "sources below, citing them like [1]. If the sources do not answer it, say so "
    "and answer from general knowledge."
)


def result_chunk(text: str) -> str:
    """A result chunk as the API carries it: a JSON array whose [0]["content"] is the text."""
    return json.dumps([{"content": text}], ensure_ascii=False)


class ResearchJobs:
    """Runs deep-research jobs as tasks on the server's loop, at most N at a time."""

    def __init__(
        self, store: Store, index: SearchIndex, completions: ChatCompletions, max_concurrent: int
    ) -> None:
        self._store = store
        self._index = index
        self._completions = completions
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        """Fail the jobs a previous server left pending or running."""
        count = await self._store.jobs.interrupt_unfinished(RESTART_REASON)
        if count:
            logger.warning("marked %d unfinished deep-research job(s) as failed", count)

    async def submit(
        self, user_id: str, chat: ChatCall, request: bytes, knobs: Knobs | None
    ) -> JobRow:
        """Persist a new job and start it in the background."""
        prompt = chat.request.prompt
        job, completion = await self._store.jobs.create(
            user_id, request, prompt, default_title(prompt)
        )
        task = asyncio.get_running_loop().create_task(
            self._run(job, completion, chat, knobs), name=f"deep-research-{job.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def close(self) -> None:
        """Cancel running jobs; they are recorded as failed."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self, job: JobRow, completion: CompletionRow, chat: ChatCall, knobs: Knobs | None
    ) -> None:
        try:
            async with self._slots:
                await self._store.jobs.set_status(job.id, "running")
                text, sources = await self._research(job.id, chat, knobs)
            await self._store.jobs.set_status(
                job.id, "completed", text=text, details={"sources": sources}
            )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._store.jobs.set_status(job.id, "failed", error=SHUTDOWN_REASON)
                )
            raise
        except RpcAbort as abort:
            await self._store.jobs.set_status(
                job.id, "failed", error=f"{abort.code.name}: {abort.details}"
            )
        except Exception as error:
            logger.exception("deep-research job %s failed", job.id)
            await self._store.jobs.set_status(job.id, "failed", error=f"internal error: {error!r}")

    async def _research(
        self, job_id: str, chat: ChatCall, knobs: Knobs | None
    ) -> tuple[str, list[dict[str, str]]]:
        question = chat.request.prompt
        # Retrieve.
        try:
            hits = await self._index.search(question, SOURCES, SEARCH_BUDGET_S)
        except SearchTimeout:
            hits = []
        # Read.
        sources = [{"url": hit.url, "title": hit.title} for hit in hits]
        request = _synthesis_request(chat.request, question, hits)
        # Synthesise, persisting the answer in chunks as it arrives.
        seq = 0
        parts: list[str] = []
        pending: list[str] = []
        last_flush = time.monotonic()

        async def flush() -> None:
            nonlocal seq, last_flush
            if pending:
                text = "".join(pending)
                pending.clear()
                await self._store.jobs.add_chunk(job_id, seq, result_chunk(text))
                parts.append(text)
                seq += 1
            last_flush = time.monotonic()

        deltas = self._completions.deltas(request, chat.timeout_s, knobs)
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                if delta.text:
                    pending.append(delta.text)
                size = sum(len(part) for part in pending)
                if size >= FLUSH_CHARS or time.monotonic() - last_flush >= FLUSH_SECONDS:
                    await flush()
        await flush()
        if not parts:
            raise RpcAbort(grpc.StatusCode.INTERNAL, "the chat engine produced no text")
        if hits:
            listing = "".join(
                f"\n[{number}] {hit.title} - {hit.url}" for number, hit in enumerate(hits, 1)
            )
            pending.append(f"\n\nSources:{listing}")
            await flush()
        return "".join(parts), sources


def _synthesis_request(original: ChatRequest, question: str, hits: list[SearchHit]) -> ChatRequest:
    """The chat request that asks the engine to answer from the retrieved passages."""
    sources = "\n\n".join(
        f"[{number}] {hit.title} ({hit.url})\n{hit.passage[:PASSAGE_CHARS]}"
        for number, hit in enumerate(hits, 1)
    )
    prompt = f"Question: {question}\n\nSources:\n\n{sources or '(no sources found)'}"
    history = [message for message in original.messages if message.role != "system"][:-1]
    messages = (Message("system", SYSTEM_PROMPT), *history, Message("user", prompt))
    return dataclasses.replace(original, messages=messages)
