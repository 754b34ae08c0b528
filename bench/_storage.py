"""Stored chats on PostgreSQL beside SQLite: per-call latency through a real server.

Two echo servers run in their own processes, one storing chats in SQLite (the
default, in its data directory) and one in a throwaway PostgreSQL on this
machine (``LocalPostgres``, fsync on: every commit is on disk before the call
answers). The raw generated stub calls each over loopback, one call at a
time: CreateChatAndCompletion (a stored chat with its first completion:
one write transaction) and GetChatSessions (the key's chats). Rounds
alternate which backend goes first; the result is PostgreSQL's median
latency over SQLite's, per round. A third server on a PostgreSQL with fsync
off runs beside them, for the notes only: the difference is the disk flush
of each commit, which SQLite's WAL mode (synchronous=NORMAL) defers to its
checkpoints and so does not pay per call.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._common import RAW_METADATA
from ._report import Row, spread
from ._server import echo_server

TARGET_RATIO = 2.0
"""PostgreSQL's median latency must be at most this many times SQLite's."""


def _latencies(stub: pb_grpc.ApexServiceStub, calls: int, create: bool) -> list[float]:
    """Milliseconds per sequential call, every answer checked."""
    timings: list[float] = []
    for number in range(calls):
        start = time.perf_counter()
        if create:
            answer = stub.CreateChatAndCompletion(
                pb.CreateChatAndCompletionRequest(user_prompt=f"bench chat {number}"),
                metadata=RAW_METADATA,
            )
            ok = answer.parsed_chat.id and answer.parsed_completion.completion_text
        else:
            listing = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=RAW_METADATA)
            ok = len(listing.chat_sessions) > 0
        timings.append((time.perf_counter() - start) * 1000)
        if not ok:
            raise AssertionError("the server answered without the stored chat")
    return timings


SCENARIOS = (
    ("create", True, "stored chat create (CreateChatAndCompletion), PostgreSQL vs SQLite"),
    ("list", False, "stored chat list (GetChatSessions), PostgreSQL vs SQLite"),
)
TARGET = f"<= {TARGET_RATIO:g}x SQLite's median latency"


def measure(rounds: int, calls: int) -> list[Row]:
    """The create and list rows: SQLite in the baseline column, PostgreSQL beside it.

    Where PostgreSQL or psycopg is not installed the rows say so (skipped).
    """
    from tools.local_postgres import INSTALL_HINT, LocalPostgres, find_bin_dir

    missing = None
    if find_bin_dir() is None:
        missing = f"PostgreSQL is not installed ({INSTALL_HINT})"
    elif importlib.util.find_spec("psycopg") is None:
        missing = "psycopg is not installed (pip install 'apex-grpc[postgres]')"
    if missing is not None:
        return [Row(scenario, TARGET, result=f"skipped: {missing}") for _, _, scenario in SCENARIOS]
    medians: dict[tuple[str, str], list[float]] = {}
    with (
        LocalPostgres() as postgres,
        LocalPostgres(durable=False) as no_fsync,
        echo_server(1, 16) as sqlite_target,
        echo_server(1, 16, database_url=postgres.create_database("apex_bench")) as pg_target,
        echo_server(1, 16, database_url=no_fsync.create_database("apex_bench")) as fast_target,
        grpc.insecure_channel(sqlite_target) as sqlite_channel,
        grpc.insecure_channel(pg_target) as pg_channel,
        grpc.insecure_channel(fast_target) as fast_channel,
    ):
        stubs = {
            "SQLite": pb_grpc.ApexServiceStub(sqlite_channel),
            "PostgreSQL": pb_grpc.ApexServiceStub(pg_channel),
            "no fsync": pb_grpc.ApexServiceStub(fast_channel),
        }
        for stub in stubs.values():  # warm up: connections, pools, caches
            _latencies(stub, 20, create=True)
            _latencies(stub, 20, create=False)
        for round_number in range(rounds):
            order = list(stubs) if round_number % 2 else list(reversed(stubs))
            for operation, create in (("create", True), ("list", False)):
                for backend in order:
                    timings = _latencies(stubs[backend], calls, create)
                    medians.setdefault((operation, backend), []).append(statistics.median(timings))
            print(f"  storage: round {round_number + 1}/{rounds}", file=sys.stderr)
    rows = []
    for operation, create, scenario in SCENARIOS:
        sqlite, pg = medians[(operation, "SQLite")], medians[(operation, "PostgreSQL")]
        no_fsync_ms = statistics.median(medians[(operation, "no fsync")])
        ratios = [p / s for s, p in zip(sqlite, pg, strict=True)]
        row = Row(scenario, TARGET)
        row.raw = f"SQLite {statistics.median(sqlite):.2f} ms/call"
        row.ours = f"PostgreSQL {statistics.median(pg):.2f} ms/call"
        row.result = spread(ratios, ".2f", "x")
        row.met = statistics.median(ratios) <= TARGET_RATIO
        row.notes.append(
            f"{rounds} rounds of {calls} sequential calls per backend, raw stub over loopback,"
            " echo engine; each backend's median per round. PostgreSQL 15 on this machine,"
            " fsync and synchronous_commit on; SQLite in WAL mode (synchronous=NORMAL)."
            f" The same PostgreSQL with fsync off: {no_fsync_ms:.2f} ms/call"
            f" ({no_fsync_ms / statistics.median(sqlite):.2f}x SQLite)"
            + (
                ": the rest is the disk flush of each commit, which SQLite defers to its"
                " checkpoints"
                if create
                else ""
            )
        )
        row.data = {
            "sqlite_ms": sqlite,
            "postgresql_ms": pg,
            "ratios": ratios,
            "postgresql_no_fsync_ms": medians[(operation, "no fsync")],
        }
        rows.append(row)
    return rows
