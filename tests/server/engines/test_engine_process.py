"""The engine in a child process the server supervises: real servers, real engine processes.

A native crash of the engine (SIGSEGV, SIGKILL) ends the calls it was answering
UNAVAILABLE at once, the server and the rest of its service answer on, health
reports the chat engine NOT_SERVING until a new process is ready, and the restart
is logged and counted. The local engine's own path is tested where llama-cpp-python
is installed (marked llm); the echo engine runs in a child too where that is faster.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import EngineUnavailable, ServerConfig
from apex_grpc_server._engines import create_engine
from apex_grpc_server._engines.process import CHILD_MODULE, ProcessEngine, Restarts, crash_reason
from apex_grpc_server._runtime.health import CHAT_HEALTH
from apex_grpc_server.cli import add_serve_arguments, config_from_args

prometheus_parser = pytest.importorskip(
    "prometheus_client.parser", reason="the server extra installs prometheus-client"
)

PUSHBACK = "grpc-retry-pushback-ms"
AT_ONCE_S = 2.0
"""How soon after the kill the calls it cut must have ended: the server learns of the death
when the socket closes (microseconds); 2 s leaves room for a loaded 2-core machine."""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def engine_pids(parent: int | None = None) -> set[int]:
    """The engine processes whose parent is ``parent`` (default: this test process)."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and CHILD_MODULE.encode() in cmdline:
            found.add(int(entry))
    return found


def new_engine(old: set[int], timeout_s: float = 60.0, parent: int | None = None) -> int:
    """The one engine process not in ``old``, once it exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = engine_pids(parent) - old
        if fresh:
            (pid,) = fresh
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no new engine process within {timeout_s} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_metrics(port: int) -> dict[tuple[str, str], float]:
    """The apex_server_engine_* samples of /metrics: {(name, reason label): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    return {
        (sample.name, sample.labels.get("reason", "")): sample.value
        for family in prometheus_parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("apex_server_engine_")
    }


class HealthWatch:
    """Every status the server's health Watch of CHAT_HEALTH sends, gathered on a thread."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.statuses: list[int] = []
        self._call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=CHAT_HEALTH)
        )
        self._thread = threading.Thread(target=self._gather, daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        try:
            for response in self._call:
                self.statuses.append(response.status)
        except grpc.RpcError:
            pass  # cancelled at the end

    def close(self) -> list[int]:
        self._call.cancel()
        self._thread.join(10)
        return self.statuses


def ask(prompt: str, max_new_tokens: int = 16) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role="user", content=prompt)],
        sampling_parameters=pb.SamplingParameters(max_new_tokens=max_new_tokens),
    )


def answer_again(stub: pb_grpc.ApexServiceStub, auth: Any, timeout_s: float = 60.0) -> float:
    """Seconds until a chat completion answers again (asked every 50 ms)."""
    started = time.monotonic()
    while True:
        try:
            stub.ChatCompletion(ask("Say hi.", 4), metadata=auth, timeout=30)
            return time.monotonic() - started
        except grpc.RpcError as error:
            code = error.code()
        assert code == grpc.StatusCode.UNAVAILABLE, code
        assert time.monotonic() - started < timeout_s, "the engine did not come back"
        time.sleep(0.05)


@pytest.fixture
def channel_to() -> Iterator[Any]:
    channels: list[grpc.Channel] = []

    def open_channel(target: str) -> grpc.Channel:
        channels.append(grpc.insecure_channel(target))
        return channels[-1]

    yield open_channel
    for channel in channels:
        channel.close()


@pytest.mark.llm
def test_sigsegv_mid_answer_ends_only_its_calls_and_the_engine_comes_back(
    start_server, channel_to, auth
) -> None:
    old = engine_pids()
    server = start_server(engine="local", metrics_port=0, queue_size=4, n_ctx=1024)
    engine = new_engine(old)
    channel = channel_to(server.target)
    stub = pb_grpc.ApexServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    stored = stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="Name a colour.", chat_type="apex"),
        metadata=auth,
    )
    watch = HealthWatch(channel)

    stream = stub.ChatCompletionStream(ask("Tell a long story.", 400), metadata=auth, timeout=30)
    assert next(stream).choices[0].delta.content is not None  # past its first chunk
    queued: list[Any] = []

    def waiting_call() -> None:  # waits for the engine's one turn, behind the stream
        try:
            stub.ChatCompletion(ask("Say yes."), metadata=auth, timeout=30)
            queued.append("answered")
        except grpc.RpcError as error:
            queued.append(error)

    waiting = threading.Thread(target=waiting_call)
    waiting.start()
    time.sleep(0.3)
    os.kill(engine, signal.SIGSEGV)
    killed = time.monotonic()
    with pytest.raises(grpc.RpcError) as cut:
        for _ in stream:
            pass
    assert time.monotonic() - killed < AT_ONCE_S
    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "process ended (SIGSEGV) while answering this call" in cut.value.details()
    waiting.join(AT_ONCE_S)
    assert not waiting.is_alive()
    (refused,) = queued
    assert isinstance(refused, grpc.RpcError), refused
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert "restarting after its process ended (SIGSEGV)" in refused.details()
    assert int(dict(refused.trailing_metadata())[PUSHBACK]) >= 500  # the first backoff

    # The server lives: health, stored chats, search and deep-research reads answer.
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == SERVING
    sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth)
    assert stored.parsed_chat.id in [session.id for session in sessions.chat_sessions]
    stub.WebRetrieval(pb.WebRetrievalRequest(search_query="orbit"), metadata=auth)
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetDeepResearcherJob(pb.GetDeepResearcherJobRequest(job_id="nope"), metadata=auth)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    assert answer_again(stub, auth) < 60
    assert engine not in engine_pids()
    assert health.Check(health_pb2.HealthCheckRequest(service=CHAT_HEALTH)).status == SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == SERVING
    statuses = watch.close()
    assert statuses[:3] == [SERVING, NOT_SERVING, SERVING], statuses
    metrics = engine_metrics(server.metrics_port)
    assert metrics[("apex_server_engine_crashes_total", "SIGSEGV")] == 1
    assert metrics[("apex_server_engine_restarts_total", "")] == 1
    assert metrics[("apex_server_engine_up", "")] == 1


@pytest.mark.llm
def test_cancelling_a_call_stops_its_generation_in_the_engine_process(
    start_server, channel_to, auth
) -> None:
    old = engine_pids()
    server = start_server(engine="local", n_ctx=1024)
    engine = new_engine(old)
    stub = pb_grpc.ApexServiceStub(channel_to(server.target))
    stream = stub.ChatCompletionStream(ask("Tell a long story.", 500), metadata=auth)
    next(stream)
    before = cpu_seconds(engine)
    time.sleep(1.0)
    generating = cpu_seconds(engine) - before
    assert generating > 0.1  # it is working on the answer
    stream.cancel()
    time.sleep(0.5)  # a token or two
    before = cpu_seconds(engine)
    time.sleep(1.5)
    assert cpu_seconds(engine) - before < 0.05, "the engine process went on generating"


@pytest.mark.llm
def test_an_engine_process_that_cannot_start_stops_the_server_start(start_server, tmp_path) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(EngineUnavailable, match=r"^cannot load .*broken\.gguf"):
        start_server(engine="local", model_path=str(bogus))
    assert engine_pids() == set()


def test_a_crash_loop_is_logged_and_counted_with_growing_delays(start_server, caplog) -> None:
    old = engine_pids()
    server = start_server(engine="echo", engine_process=True, metrics_port=0)
    engine = new_engine(old)
    with caplog.at_level(logging.WARNING, logger="apex_grpc_server"):
        for restarts in range(1, 4):
            os.kill(engine, signal.SIGKILL)
            engine = new_engine({engine})
            deadline = time.monotonic() + 60
            while engine_metrics(server.metrics_port)[("apex_server_engine_up", "")] != 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)  # ready: the next kill is a crash, not a failed start
            assert (
                engine_metrics(server.metrics_port)[("apex_server_engine_restarts_total", "")]
                == restarts
            )
    crashes = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(crashes) == 3, crashes
    for count, (line, delay) in enumerate(zip(crashes, ("0.5", "1.0", "2.0"), strict=True), 1):
        assert re.search(
            rf"^the echo engine's process \d+ ended \(SIGKILL\) after [\d.]+ s, ending 0 call\(s\)"
            rf" in flight; restarting it in {delay} s \(crash {count} in a row\)$",
            line,
        ), line
    backs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [re.sub(r"\d+\.\d", "T", re.sub(r"process \d+", "process P", m)) for m in backs] == [
        f"the echo engine's process P is back, ready after T s (restart {n})" for n in (1, 2, 3)
    ]
    metrics = engine_metrics(server.metrics_port)
    assert metrics[("apex_server_engine_crashes_total", "SIGKILL")] == 3
    assert metrics[("apex_server_engine_restarts_total", "")] == 3


def test_unary_calls_cut_by_a_crash_get_a_retry_hint_the_client_follows(
    start_server, channel_to, auth, api_key
) -> None:
    old = engine_pids()
    server = start_server(engine="echo", engine_process=True, echo_chunks=20, echo_delay_s=0.05)
    engine = new_engine(old)
    stub = pb_grpc.ApexServiceStub(channel_to(server.target))
    info = mc.CallInfo()
    answers: list[Any] = []
    with mc.ApexClient(api_key=api_key, base_url=server.target, secure=False) as client:

        def sdk_call() -> None:
            response = client.chat.completions.create(
                messages=[{"role": "user", "content": "again"}], call_info=info, timeout=30
            )
            answers.append(response.choices[0].message.content)

        def raw_call() -> None:
            try:
                stub.ChatCompletion(ask("raw"), metadata=auth, timeout=30)
            except grpc.RpcError as error:
                answers.append(error)

        callers = [threading.Thread(target=sdk_call), threading.Thread(target=raw_call)]
        for caller in callers:
            caller.start()
        time.sleep(0.4)  # an answer takes 20 x 50 ms: the engine is in the middle of both
        os.kill(engine, signal.SIGKILL)
        for caller in callers:
            caller.join(30)
    (cut,) = [answer for answer in answers if isinstance(answer, grpc.RpcError)]
    assert cut.code() == grpc.StatusCode.UNAVAILABLE
    assert "process ended (SIGKILL) while answering this call" in cut.details()
    assert int(dict(cut.trailing_metadata())[PUSHBACK]) >= 500  # the first backoff
    assert [answer for answer in answers if isinstance(answer, str)] == [("again" * 64)[:320]]
    assert info.attempts >= 2  # the first ended UNAVAILABLE; the retry waited as told


def test_deltas_cross_as_they_come_and_engine_errors_keep_their_status(
    start_server, channel_to, auth
) -> None:
    server = start_server(
        engine="echo", engine_process=True, echo_chunks=3, echo_delay_s=1.0, echo_context=40
    )
    stub = pb_grpc.ApexServiceStub(channel_to(server.target))
    started = time.monotonic()
    stream = stub.ChatCompletionStream(ask("hello"), metadata=auth)
    assert next(stream).choices[0].delta.content == "hellohellohelloh"
    assert time.monotonic() - started < 0.9  # before the engine made its second delta
    stream.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(ask("x" * 50), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the prompt is 50 tokens, more than the echo model's 40-token context" in (
        caught.value.details()
    )
    assert ("x-apex-prompt-tokens", "50") in caught.value.trailing_metadata()
    # The whole ChatRequest crosses: a stored chat's next completion asks the engine to fit
    # its history into the context (fit_context), which here means dropping the first turn.
    chat = stub.CreateChatAndCompletion(
        pb.CreateChatAndCompletionRequest(user_prompt="y" * 20, chat_type="apex"),
        metadata=auth,
    )
    fitted = stub.CreateCompletion(
        pb.CreateCompletionRequest(chat_id=chat.parsed_chat.id, user_prompt="short"),
        metadata=auth,
    )
    assert fitted.parsed_completion.completion_text == ("short" * 10)[:48]


def test_the_engine_process_never_outlives_the_server(tmp_path) -> None:
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            *("-m", "apex_grpc_server", "--engine", "echo", "--engine-process"),
            *("--allow-any-key", "--port", "0", "--port-file", str(port_file)),
            *("--data-dir", str(tmp_path / "data"), "--no-default-corpus"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        engine = new_engine(set(), parent=server.pid)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        server.kill()
        server.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{engine}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # reparented to init, which reaps it once it exits
        assert not Path(f"/proc/{engine}").exists(), "the engine process outlived its server"
    finally:
        server.kill()
        server.wait()


def test_restarts_back_off_exponentially_up_to_a_cap_and_a_stable_run_resets_them() -> None:
    restarts = Restarts(first_delay_s=0.5, max_delay_s=4.0, stable_s=60.0)
    assert [restarts.delay_after_crash(1.0) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert restarts.in_a_row == 6
    assert restarts.delay_after_crash(60.0) == 0.5
    assert restarts.in_a_row == 1


def test_crash_reasons_name_the_signal_or_the_exit_status() -> None:
    assert crash_reason(-signal.SIGSEGV) == "SIGSEGV"
    assert crash_reason(-signal.SIGKILL) == "SIGKILL"
    assert crash_reason(1) == "exit_1"
    assert crash_reason(None) == "unresponsive"


def test_the_local_engine_runs_in_a_child_unless_told_otherwise(tmp_path) -> None:
    def parse(*flags: str) -> ServerConfig:
        parser = __import__("argparse").ArgumentParser()
        add_serve_arguments(parser)
        return config_from_args(parser.parse_args(["--data-dir", str(tmp_path), *flags]))

    assert parse().engine_process is None and parse().engine_in_child
    assert not parse("--no-engine-process").engine_in_child
    assert not parse("--engine", "echo").engine_in_child
    assert parse("--engine", "echo", "--engine-process").engine_in_child
    echo = create_engine(ServerConfig(engine="echo", engine_process=True, data_dir=tmp_path))
    assert isinstance(echo, ProcessEngine) and echo.kind == "echo"
