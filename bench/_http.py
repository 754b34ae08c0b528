"""The HTTP face (`serve --http-port`) against the gRPC face of the same server, in the same run.

One echo server process serves both faces (1 chunk of 16 characters per answer).
Sequential unary ChatCompletion calls over gRPC (the raw generated stub on one
channel), Connect JSON and Connect binary (one keep-alive HTTP/1.1 connection of
the standard library's http.client: a thin client, so the row is mostly the
server's cost), in slices alternating which goes first; every answer is checked.
Rows: each Connect codec's calls/s over gRPC's per round (target for binary:
>= 0.7x), the time to the first chunk of a stream over Connect minus gRPC's
(shuffled samples), and what serving HTTP costs the gRPC face when no HTTP call
comes: a server process with ``--http-port`` that no HTTP call reaches against a
twin without it, by the server's CPU time per gRPC call (target: <= 1.02x).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._common import BENCH_KEY, MESSAGES, RAW_METADATA, expected_text
from ._report import Row, ratio_row, spread
from ._server import server_process

CHUNK_SIZE = 16
ANSWER = expected_text(1, CHUNK_SIZE)
BINARY_TARGET = 0.7
IDLE_TARGET = 1.02
PATH = "/apex.v1.ApexService/"

_LAUNCHER = """
import pathlib, sys, tempfile
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(
    host="127.0.0.1", port=0, engine="echo", api_keys=frozenset({sys.argv[1]}),
    data_dir=pathlib.Path(tempfile.mkdtemp(prefix="apex-bench-")), default_corpus=False,
    echo_chunks=1, echo_chunk_size=int(sys.argv[2]), drain_delay_s=0.0,
    http_port=0 if sys.argv[3] == "http" else None,
)
with run_server(config) as server:
    print(server.port, flush=True)
    print(server.http_port or 0, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
"""


@contextmanager
def _server(http: bool) -> Iterator[tuple[int, int, int]]:
    """An echo server process: (gRPC port, HTTP port or 0, the process)."""
    argv = ["-c", _LAUNCHER, BENCH_KEY, str(CHUNK_SIZE), "http" if http else "grpc"]
    with server_process(argv) as (process, port):
        assert process.stdout is not None
        yield port, int(process.stdout.readline()), _cpu_clock(process.pid)


def _cpu_clock(pid: int) -> int:
    """The CPU-time clock of process `pid` (nanoseconds; /proc's ticks are 10 ms coarse)."""
    clock = ctypes.c_int()
    if ctypes.CDLL(None, use_errno=True).clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        raise OSError(ctypes.get_errno(), f"clock_getcpuclockid({pid})")
    return clock.value


def _cpu(clock: int) -> float:
    return time.clock_gettime(clock)


REQUEST = pb.ChatCompletionRequest(messages=[pb.ChatMessage(**m) for m in MESSAGES])
HEADERS = dict(RAW_METADATA)


def _grpc_caller(stub: pb_grpc.ApexServiceStub) -> Callable[[], None]:
    def call() -> None:
        reply = stub.ChatCompletion(REQUEST, metadata=RAW_METADATA)
        if reply.choices[0].message.content != ANSWER:
            raise AssertionError("gRPC: wrong answer")

    return call


def _connect_caller(connection: http.client.HTTPConnection, binary: bool) -> Callable[[], None]:
    content_type = "application/proto" if binary else "application/json"
    headers = {**HEADERS, "content-type": content_type, "connect-protocol-version": "1"}
    body = REQUEST.SerializeToString() if binary else json.dumps({"messages": MESSAGES}).encode()

    def call() -> None:
        connection.request("POST", PATH + "ChatCompletion", body, headers)
        response = connection.getresponse()
        data = response.read()
        if binary:
            text = pb.ChatCompletionResponse.FromString(data).choices[0].message.content
        else:
            text = json.loads(data)["choices"][0]["message"]["content"]
        if response.status != 200 or text != ANSWER:
            raise AssertionError(f"Connect: wrong answer ({response.status})")

    return call


def _slice(call: Callable[[], None], seconds: float) -> tuple[int, float]:
    """Calls made in `seconds` of back-to-back calls, and the time they took."""
    calls, start = 0, time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        call()
        calls += 1
    return calls, time.perf_counter() - start


def _first_chunk_grpc(stub: pb_grpc.ApexServiceStub) -> float:
    start = time.perf_counter()
    stream = stub.ChatCompletionStream(REQUEST, metadata=RAW_METADATA)
    first = next(stream)
    elapsed = time.perf_counter() - start
    list(stream)
    if first.choices[0].delta.content != ANSWER:
        raise AssertionError("gRPC stream: wrong first chunk")
    return elapsed


def _first_chunk_connect(connection: http.client.HTTPConnection) -> float:
    payload = REQUEST.SerializeToString()
    body = struct.pack(">BI", 0, len(payload)) + payload
    headers = {**HEADERS, "content-type": "application/connect+proto"}
    start = time.perf_counter()
    connection.request("POST", PATH + "ChatCompletionStream", body, headers)
    response = connection.getresponse()
    _, size = struct.unpack(">BI", response.read(5))
    first = pb.ChatCompletionChunkResponse.FromString(response.read(size))
    elapsed = time.perf_counter() - start
    response.read()  # the end of the stream
    if first.choices[0].delta.content != ANSWER:
        raise AssertionError("Connect stream: wrong first chunk")
    return elapsed


def measure(rounds: int, slices: int, seconds: float, samples: int) -> list[Row]:
    """The HTTP face's rows (see the module docstring)."""
    rates: dict[str, list[float]] = {
        name: [] for name in ("grpc", "json", "binary", "with", "without")
    }
    cpu_per_call: dict[str, list[float]] = {"with": [], "without": []}
    firsts: dict[str, list[float]] = {"grpc": [], "connect": []}
    with (
        _server(http=True) as (port, http_port, _),
        _server(http=True) as (idle_port, _, idle),
        _server(http=False) as (twin_port, _, twin),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        grpc.insecure_channel(f"127.0.0.1:{idle_port}") as idle_channel,
        grpc.insecure_channel(f"127.0.0.1:{twin_port}") as twin_channel,
    ):
        connection = http.client.HTTPConnection("127.0.0.1", http_port)
        stub = pb_grpc.ApexServiceStub(channel)
        sides = {
            "grpc": _grpc_caller(stub),
            "json": _connect_caller(connection, binary=False),
            "binary": _connect_caller(connection, binary=True),
            "with": _grpc_caller(pb_grpc.ApexServiceStub(idle_channel)),
            "without": _grpc_caller(pb_grpc.ApexServiceStub(twin_channel)),
        }
        processes = {"with": idle, "without": twin}
        for call in sides.values():  # warm up: connections, caches
            _slice(call, 0.3)
        for number in range(rounds):
            calls = dict.fromkeys(sides, 0)
            took = dict.fromkeys(sides, 0.0)
            cpu = dict.fromkeys(processes, 0.0)
            for index in range(slices):
                order = list(sides) if (number + index) % 2 == 0 else list(reversed(sides))
                for name in order:
                    before = _cpu(processes[name]) if name in processes else 0.0
                    made, elapsed = _slice(sides[name], seconds)
                    if name in processes:
                        cpu[name] += _cpu(processes[name]) - before
                    calls[name] += made
                    took[name] += elapsed
            for name in sides:
                rates[name].append(calls[name] / took[name])
            for name in processes:
                cpu_per_call[name].append(cpu[name] / calls[name] * 1e6)
            print(f"  http: round {number + 1}/{rounds}", file=sys.stderr)
        for _ in range(samples):
            pair: list[tuple[str, Callable[[], float]]] = [
                ("grpc", lambda: _first_chunk_grpc(stub)),
                ("connect", lambda: _first_chunk_connect(connection)),
            ]
            random.shuffle(pair)
            for name, sample in pair:
                firsts[name].append(sample())
        connection.close()
    return _rows(
        rates, cpu_per_call, firsts, f"{rounds} rounds of {slices} slices of {seconds:g} s"
    )


def _rows(
    rates: dict[str, list[float]],
    cpu_per_call: dict[str, list[float]],
    firsts: dict[str, list[float]],
    rounds: str,
) -> list[Row]:
    method = (
        f"{rounds} of sequential ChatCompletion calls per side, order"
        " alternating; gRPC: the raw stub; Connect: one keep-alive HTTP/1.1 connection"
        " (http.client); one echo server process serves both faces (hypercorn + connectrpc)."
    )
    rows = []
    for codec, target, floor in (
        ("binary", f">= {BINARY_TARGET}x gRPC", BINARY_TARGET),
        ("json", "reported", None),
    ):
        row = ratio_row(
            f"HTTP face: Connect {codec} unary calls/s vs gRPC, same server",
            "calls/s",
            target,
            rates["grpc"],
            rates[codec],
            None if floor is None else (lambda median, floor=floor: median >= floor),
            raw_label="gRPC ",
        )
        row.notes.append(method)
        rows.append(row)
    differences = [
        (c - g) * 1000
        for g, c in zip(sorted(firsts["grpc"]), sorted(firsts["connect"]), strict=True)
    ]
    ttfc = Row("HTTP face: stream time to first chunk, Connect binary minus gRPC", "reported")
    ttfc.raw = f"gRPC {statistics.median(firsts['grpc']) * 1000:.2f} ms"
    ttfc.ours = f"Connect {statistics.median(firsts['connect']) * 1000:.2f} ms"
    ttfc.result = spread(differences, "+.2f", " ms")
    ttfc.notes.append(
        f"{len(firsts['grpc'])} one-chunk ChatCompletionStream calls per side in shuffled"
        " pairs; the min-max is over the differences of matching quantiles."
    )
    ttfc.data = {"grpc_s": firsts["grpc"], "connect_s": firsts["connect"]}
    rows.append(ttfc)
    idle = ratio_row(
        "HTTP face: its cost to a gRPC call when idle, server CPU per call (with / without)",
        "µs/call",
        f"<= {IDLE_TARGET}x",
        cpu_per_call["without"],
        cpu_per_call["with"],
        lambda median: median <= IDLE_TARGET,
        raw_label="without ",
    )
    idle.ours = f"with {idle.ours}"
    without = statistics.median(rates["without"]) / statistics.median(rates["with"])
    idle.notes.append(
        "Two more server processes, one with --http-port (which no HTTP call reaches) and one"
        " without, called by the same raw stub in the same slices; each one's CPU time (its"
        " CPU-time clock, clock_getcpuclockid) over its gRPC calls, per call. Their calls/s,"
        f" more exposed to the machine's load: without / with = {without:.2f}x."
    )
    rows.append(idle)
    return rows
