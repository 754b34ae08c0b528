"""``apex-grpc research``: submit a deep-research job and watch it until it is done.

Progress (the job's status and how many result chunks it has) is a spinner
on a terminal, and plain lines on stderr otherwise; the result goes to
stdout. It follows the job with the client's ``deep_research.follow``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from apex_grpc import (
    ApexClient,
    DeepResearchTimeoutError,
    GetDeepResearcherJobResponse,
    MessageParam,
    chunk_text,
)
from apex_grpc.cli._errors import Interrupted, UsageError
from apex_grpc.cli._terminal import Terminal, to_data

Show = Callable[[str, int], None]
"""Report the job's status and its number of result chunks."""


def run(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Submit (or resume with --job) and watch; print the result, or only the id (--detach)."""
    question = _question(args)
    if args.job:
        if question or args.detach:
            raise UsageError("--job ID watches an existing job: give no question and no --detach")
        job_id = args.job
    else:
        options = {"model": args.model} if args.model else {}
        messages = [MessageParam(role="user", content=question)]
        submitted = client.deep_research.submit(messages, **options)
        if args.detach:
            if args.json:
                term.json(submitted)
            else:
                term.line(submitted.job_id)
            return 0
        job_id = submitted.job_id
        term.note(f"submitted deep-research job {job_id}")
    resume = f"apex-grpc research --job {job_id}"
    try:
        final = watch(client, job_id, args.timeout, term)
    except KeyboardInterrupt:
        term.after_interrupt()
        term.note(f"stopped watching; job {job_id} keeps running (resume: {resume})")
        raise Interrupted from None
    except DeepResearchTimeoutError:
        term.note(f"resume: {resume}")
        raise
    if args.json:
        term.json(job_data(final))
    else:
        term.line(result_text(final))
    return 0


def _question(args: argparse.Namespace) -> str:
    words = " ".join(args.question).strip()
    if words == "-" or (not words and not args.job and not sys.stdin.isatty()):
        words = sys.stdin.read().strip()
    if not words and not args.job:
        raise UsageError("give a question (or '-' to read it from stdin), or --job ID")
    return words


def job_data(job: GetDeepResearcherJobResponse) -> dict[str, Any]:
    """The job as JSON data; each result chunk, JSON text in a string, is decoded.

    Printed as is, a chunk would be JSON inside a JSON string (escaped twice).
    A chunk that is not JSON stays a string.
    """
    data = to_data(job)
    for chunk in data.get("result", ()):
        with contextlib.suppress(KeyError, ValueError):
            chunk["chunk"] = json.loads(chunk["chunk"])
    return data


def result_text(job: GetDeepResearcherJobResponse) -> str:
    """The job's answer: the text of its result chunks in order."""
    return "".join(chunk_text(c) for c in sorted(job.result, key=lambda c: c.seq_id)).strip()


def watch(
    client: ApexClient, job_id: str, timeout: float | None, term: Terminal
) -> GetDeepResearcherJobResponse:
    """Poll the job until it completes, showing progress; raises if it fails or times out."""
    final: GetDeepResearcherJobResponse | None = None
    with progress(term, job_id) as show:
        for update in client.deep_research.follow(job_id, timeout=timeout):
            show(update.status or "unknown", update.chunk_count)
            final = update.response
    assert final is not None  # follow yields at least once, or raises
    return final


@contextlib.contextmanager
def progress(term: Terminal, job_id: str) -> Iterator[Show]:
    """A spinner with status and chunk count on a terminal; else a line per change."""
    label = f"job {job_id[:8]}"
    if not term.fancy:
        last: tuple[str, int] | None = None

        def show_plain(status: str, chunks: int) -> None:
            nonlocal last
            if (status, chunks) != last:
                last = (status, chunks)
                term.note(f"research: {label} {status}, {_chunks(chunks)}")

        yield show_plain
        return

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=term.console(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"research: {label} submitted", total=None)

        def show_rich(status: str, chunks: int) -> None:
            bar.update(task, description=f"research: {label} [bold]{status}[/], {_chunks(chunks)}")

        yield show_rich


def _chunks(count: int) -> str:
    return f"{count} chunk{'' if count == 1 else 's'}"
