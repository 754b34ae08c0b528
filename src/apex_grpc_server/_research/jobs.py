"""Deep-research jobs: retrieve, read, synthesise, in the background, persisted as they go."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._chat.completions import ChatCompletions
from apex_grpc_server._engines import ChatRequest, Message
from apex_grpc_server._search.index import SearchHit, SearchIndex, SearchTimeout
from apex_grpc_server._status import RpcAbort
from apex_grpc_server._store import ClaimedJob, JobRow, Storage, default_title
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.interface import Check, StoreUnavailable
from apex_grpc_server._store.rows import now_us
from apex_grpc_server._wire.fault_injection import Knobs
from apex_grpc_server._wire.reply_limits import (
    JobReplyBudget,
    ListingLimit,
    ListingTooLarge,
    answer_too_large,
    cut_job_error,
    job_error,
)
from apex_grpc_server._wire.validation import ChatCall
from apex_grpc_server._wire.validation import chat as validate_chat

logger = logging.getLogger("apex_grpc_server")

MAX_REMEMBERED = 1024
"""Jobs submitted here whose chat and knobs are kept until this runner claims them."""
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


class LeaseLost(Exception):
    """This runner no longer holds the job's lease: another one may be running it."""


class ResearchJobs:
    """This server's deep-research job runner: claims stored jobs and runs them, N at a time.

    Every replica of a fleet runs one. A runner claims pending jobs (and
    running ones whose lease ran out: their runner died) from the shared
    store, renews each lease every ``renew_s`` while the job runs, and writes
    chunks and the result only while it still holds the lease. A job this
    server accepts is claimed at once (``submit`` wakes the loop); others are
    found by polling every ``poll_s``. Closing releases the leases, so
    another replica (or this server after a restart) takes the jobs over at once.

    A job's answer is held to what the server can send back (``_wire.reply_limits``): its
    chunks to one GetDeepResearcherJob reply, and the stored answer to the listings
    that carry it (the job's chat; the user's deep-research entries across chats).
    An answer past either fails the job with an error naming the limit rather than
    being cut short: a user would take a truncated answer for the whole one, while
    "failed: too large for --max-message-bytes" says what to change. The chunks
    stored before it stay readable in the job's result.
    """

    def __init__(
        self,
        store: Storage,
        index: SearchIndex,
        completions: ChatCompletions,
        max_concurrent: int,
        *,
        lease_s: float = 15.0,
        renew_s: float = 5.0,
        poll_s: float = 1.0,
    ) -> None:
        self._store = store
        self._index = index
        self._completions = completions
        self._readable = ListingLimit(completions.max_message_bytes)
        self._max_concurrent = max_concurrent
        self._lease_s = lease_s
        self._renew_s = renew_s
        self._poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._claim_failing = False  # the last claim failed for want of a store
        self._loop_task: asyncio.Task[None] | None = None
        # The chat and test knobs of jobs submitted here (a job taken over from
        # another replica is rebuilt from its stored request, without knobs).
        self._submitted: dict[str, tuple[ChatCall, Knobs | None]] = {}
        self._running: dict[asyncio.Task[None], str] = {}  # task -> lease token

    def start(self) -> None:
        """Start claiming jobs on the running loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._claim_loop(), name="deep-research-runner"
            )

    async def submit(
        self,
        user_id: str,
        chat: ChatCall,
        request: bytes,
        knobs: Knobs | None,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> JobRow:
        """Persist a new job (committed before this returns) and wake the runner."""
        prompt = chat.request.prompt
        job, _ = await self._store.jobs.create(
            user_id, request, prompt, default_title(prompt), check=check, key=key
        )
        if len(self._submitted) >= MAX_REMEMBERED:  # jobs another replica claimed first
            self._submitted.pop(next(iter(self._submitted)))
        self._submitted[job.id] = (chat, knobs)
        self._wake.set()
        return job

    async def close(self) -> None:
        """Stop claiming, stop the running jobs and release their leases."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        tasks = list(self._running)
        tokens = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if tokens:
            with contextlib.suppress(Exception):
                released = await self._store.jobs.release(tokens)
                logger.info("released %d deep-research job lease(s)", released)

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            free = self._max_concurrent - len(self._running)
            if free > 0:
                try:
                    claimed = await self._store.jobs.claim(self.owner, self._lease_s, free)
                    self._claim_failing = False
                except StoreUnavailable as error:
                    # The store's own health service and metric report the outage; one
                    # line here when it starts, not a traceback every poll.
                    if not self._claim_failing:
                        logger.warning("cannot claim deep-research jobs: %s; retrying", error)
                    self._claim_failing = True
                    claimed = []
                except Exception:
                    logger.exception("claiming deep-research jobs failed; retrying")
                    claimed = []
                for job in claimed:
                    task = asyncio.get_running_loop().create_task(
                        self._run(job), name=f"deep-research-{job.id}"
                    )
                    self._running[task] = job.token
                    task.add_done_callback(self._done)
                if len(claimed) == free:
                    continue  # there may be more waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a slot is free

    async def _run(self, job: ClaimedJob) -> None:
        chat, knobs = self._submitted.pop(job.id, (None, None))
        run = asyncio.current_task()
        assert run is not None
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job, run))
        try:
            if chat is None:
                chat = validate_chat(pb.ChatCompletionRequest.FromString(job.request))
            text, sources = await self._research(job, chat, knobs)
            outcome: dict[str, Any] = {"text": text, "details": {"sources": sources}}
            status = "completed"
        except (asyncio.CancelledError, LeaseLost):
            # Closing (the lease is released next) or the lease is lost (another
            # runner may hold it now): either way this run writes nothing more.
            return
        except RpcAbort as abort:
            status, outcome = "failed", {"error": job_error(abort)}
        except Exception as error:
            logger.exception("deep-research job %s failed", job.id)
            status, outcome = "failed", {"error": cut_job_error(f"internal error: {error!r}")}
        finally:
            heartbeat.cancel()
        try:
            if not await self._finish(job, status, outcome):
                logger.warning("deep-research job %s: lease lost before its result", job.id)
        except Exception:  # the lease runs out and another runner redoes the job
            logger.exception("storing the result of deep-research job %s failed", job.id)

    async def _finish(self, job: ClaimedJob, status: str, outcome: dict[str, Any]) -> bool:
        """Store the job's end; an answer that a listing could not carry fails the job instead.

        The answer is checked like any write of a completion (``ListingLimit``). A
        failure is written unchecked: it adds at most ``JOB_ERROR_CHARS`` of error.
        """
        if status != "completed":
            return await self._store.jobs.finish(job.id, job.token, status, **outcome)
        try:
            return await self._store.jobs.finish(
                job.id, job.token, status, check=self._readable, **outcome
            )
        except ListingTooLarge as refused:
            error = job_error(answer_too_large(refused))
            return await self._store.jobs.finish(job.id, job.token, "failed", error=error)

    async def _heartbeat(self, job: ClaimedJob, run: asyncio.Task[None]) -> None:
        """Renew the lease every ``renew_s``; cancel the job's run once the lease is lost."""
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                held = await self._store.jobs.renew(job.id, job.token, self._lease_s)
            except Exception:
                logger.exception("renewing the lease of deep-research job %s failed", job.id)
                continue
            if not held:
                logger.warning("deep-research job %s: lease lost, stopping", job.id)
                run.cancel()
                return

    async def _research(
        self, job: ClaimedJob, chat: ChatCall, knobs: Knobs | None
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
        budget = JobReplyBudget(job.id, now_us(), self._completions.max_message_bytes)
        parts: list[str] = []
        pending: list[str] = []
        last_flush = time.monotonic()

        async def flush() -> None:
            nonlocal seq, last_flush
            if pending:
                text = "".join(pending)
                pending.clear()
                chunk = result_chunk(text)
                budget.add(seq, chunk)
                if not await self._store.jobs.add_chunk(job.id, job.token, seq, chunk):
                    raise LeaseLost(job.id)
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
