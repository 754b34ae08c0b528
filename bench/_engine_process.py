"""What running the local engine in a process of its own costs (`--only engine`, needs the model).

Three sides answer the same greedy completion of the same prompt with the same
SmolLM2 GGUF, interleaved round by round (the order rotates):

- *direct*: llama-cpp-python called in a process of its own
  (``Llama.create_chat_completion``, streamed), with the local engine's own settings
  (threads, context, sampling, the system prompt it adds), so the tokens are the same;
- *child*: a server process whose local engine runs in its child process (the
  default), called through the raw generated stub over loopback;
- *in-process*: the same server with ``engine_process=False``.

Tokens/s is content chunks / (last chunk - request sent): one chunk per token on every
side, timed to the end, since a client starved of CPU reads a stream's chunks late and in
bursts (timed from the first chunk, that made the server look faster than llama.cpp).
Time to first token is measured on one-token answers, samples alternating between the
two servers. Every answer is checked against the direct one.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._common import BENCH_KEY, RAW_METADATA, check
from ._model import PROMPT
from ._report import Row, ratio_row, value_row
from ._server import server_process

_LAUNCHER = """
import pathlib, sys, tempfile
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(
    host="127.0.0.1", port=0, engine="local", api_keys=frozenset({sys.argv[1]}),
    engine_process=sys.argv[2] == "child", default_corpus=False, drain_delay_s=0.0,
    data_dir=pathlib.Path(tempfile.mkdtemp(prefix="apex-bench-")),
)
with run_server(config) as server:
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
"""


@contextmanager
def local_server(where: str) -> Iterator[pb_grpc.ApexServiceStub]:
    """A local-engine server process (``where``: "child" or "inline"); yields a raw stub."""
    with (
        server_process(["-c", _LAUNCHER, BENCH_KEY, where]) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield pb_grpc.ApexServiceStub(channel)


def _request(tokens: int) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role="user", content=PROMPT)],
        sampling_parameters=pb.SamplingParameters(max_new_tokens=tokens, do_sample=False),
    )


def through_server(stub: pb_grpc.ApexServiceStub, tokens: int) -> tuple[str, float, float]:
    """(text, seconds to the first token, tokens/s after it) of one streamed answer."""
    started = time.perf_counter()
    stamps: list[float] = []
    parts: list[str] = []
    for chunk in stub.ChatCompletionStream(_request(tokens), metadata=RAW_METADATA):
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts), stamps[0] - started, _rate(started, stamps)


_DIRECT = """
import json, sys, time
from llama_cpp import Llama
from apex_grpc_server._engines.llama import SAMPLING, SYSTEM_PROMPT, default_threads
from apex_grpc_server._engines.model import default_model_path
llm = Llama(
    model_path=str(default_model_path()), n_ctx=2048, n_threads=default_threads(), verbose=False
)
messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": sys.argv[1]}]
print(0, flush=True)  # ready (the port line server_process expects)
for line in sys.stdin:
    started = time.perf_counter()
    stamps, parts = [], []
    for chunk in llm.create_chat_completion(
        messages=messages, max_tokens=int(line), stream=True, temperature=0.0, top_p=1.0,
        **SAMPLING,
    ):
        text = chunk["choices"][0].get("delta", {}).get("content")
        if text:
            stamps.append(time.perf_counter())
            parts.append(text)
    print(json.dumps(["".join(parts), started, stamps]), flush=True)
"""


class Direct:
    """llama-cpp-python called directly, in a process of its own as the engine's child is,
    set up as the local engine sets up its model (threads, context, sampling, system prompt)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def answer(self, tokens: int) -> tuple[str, float, float]:
        """(text, seconds to the first token, tokens/s after it) of one streamed answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{tokens}\n")
        self.process.stdin.flush()
        text, started, stamps = json.loads(self.process.stdout.readline())
        return text, stamps[0] - started, _rate(started, stamps)


def _rate(started: float, stamps: list[float]) -> float:
    return len(stamps) / (stamps[-1] - started)


def measure(rounds: int, tokens: int, first_token_samples: int) -> list[Row]:
    """The tokens/s row (child over direct) and the time-to-first-token row (child - inline)."""
    rates: dict[str, list[float]] = {"direct": [], "child": [], "inline": []}
    mismatches = 0
    with (
        server_process(["-c", _DIRECT, PROMPT]) as (probe, _),
        local_server("child") as child,
        local_server("inline") as inline,
    ):
        direct = Direct(probe)
        sides = {
            "direct": direct.answer,
            "child": lambda n: through_server(child, n),
            "inline": lambda n: through_server(inline, n),
        }
        for side in sides.values():
            side(8)  # warm up: the prompt's prefix is cached on every side from here on
        for round_number in range(rounds):
            order = list(sides)[round_number % 3 :] + list(sides)[: round_number % 3]
            texts = {}
            for name in order:
                texts[name], _, rate = sides[name](tokens)
                rates[name].append(rate)
            check(bool(texts["direct"]), "llama-cpp-python answered nothing")
            mismatches += texts["child"] != texts["direct"] or texts["inline"] != texts["direct"]
            print(f"  engine process: round {round_number + 1}/{rounds}", file=sys.stderr)
        first: dict[str, list[float]] = {"child": [], "inline": []}
        for sample in range(first_token_samples):
            pair = [("child", child), ("inline", inline)]
            for name, stub in pair if sample % 2 else pair[::-1]:
                first[name].append(through_server(stub, 1)[1])
    speed = ratio_row(
        "local model streamed through the server, engine in its child process, over"
        " llama-cpp-python called directly (same GGUF, greedy, "
        f"{tokens} tokens)",
        "tokens/s",
        ">= 0.95x direct",
        rates["direct"],
        rates["child"],
        lambda r: r >= 0.95,
        raw_label="direct ",
    )
    speed.notes.append(
        f"engine in the server's process: {statistics.median(rates['inline']):.0f} tokens/s;"
        f" {rounds} rounds, sides in rotating order; answers differing from direct:"
        f" {mismatches} of {rounds}"
    )
    differences = [
        (c - i) * 1000 for c, i in zip(sorted(first["child"]), sorted(first["inline"]), strict=True)
    ]
    ttft = value_row(
        "time to first token, engine in its child process minus in the server's process"
        " (matching quantiles)",
        "ms",
        "<= 5 ms",
        differences,
        lambda v: v <= 5,
    )
    low, high = min(differences), max(differences)
    ttft.result = f"**{statistics.median(differences):+.1f} ms** ({low:+.1f} to {high:+.1f})"
    ttft.notes.append(
        f"medians: child {statistics.median(first['child']) * 1000:.1f} ms, in-process"
        f" {statistics.median(first['inline']) * 1000:.1f} ms ({first_token_samples} samples"
        " each, alternating)"
    )
    return [speed, ttft]
