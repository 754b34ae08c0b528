"""`apex-grpc serve` / `python -m apex_grpc_server` as a process, and `apex-grpc index`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import cli as _cli

pytestmark = pytest.mark.oldest

KEY = "cli-test-key-42"
AUTH = (("authorization", f"Bearer {KEY}"),)


def server_command(port: str, data_dir: Path, *flags: str) -> list[str]:
    """The echo server's command line, on `port`, keeping its data in `data_dir`."""
    return [
        sys.executable,
        "-m",
        "apex_grpc_server",
        "--engine",
        "echo",
        "--port",
        port,
        "--api-key",
        KEY,
        "--data-dir",
        str(data_dir),
        *flags,
    ]


class Process:
    """A server subprocess on a free port, found through --port-file."""

    def __init__(self, data_dir: Path, *flags: str) -> None:
        self.port_file = data_dir.parent / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            server_command("0", data_dir, "--port-file", str(self.port_file), *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"server did not start: {self.proc.communicate()[1]}")
            time.sleep(0.05)
        self.target = f"127.0.0.1:{int(self.port_file.read_text())}"

    def finish(self, timeout: float = 15) -> tuple[int, str]:
        _, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stderr


@pytest.fixture
def process(tmp_path):
    started: list[Process] = []

    def start(*flags: str, data_dir: Path | None = None) -> Process:
        started.append(Process(data_dir or tmp_path / "data", *flags))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


def ask(text: str = "hi") -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)])


def test_sigterm_drains_the_stream_in_flight_and_exits_0(process) -> None:
    server = process()
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.ApexServiceStub(channel)
        metadata = (*AUTH, ("x-echo-chunks", "8"), ("x-echo-delay-ms", "100"))
        stream = stub.ChatCompletionStream(ask(), metadata=metadata)
        received = [next(stream)]
        server.proc.send_signal(signal.SIGTERM)
        received.extend(stream)
    assert len(received) == 8
    status, stderr = server.finish()
    assert status == 0
    assert "/apex.v1.ApexService/ChatCompletionStream OK" in stderr
    assert "server stopped" in stderr
    assert KEY not in stderr


def test_kill_9_then_restart_runs_the_job_again_once_its_lease_runs_out(
    process, start_server, connect, tmp_path
) -> None:
    data_dir = tmp_path / "data"
    server = process("--job-lease", "2", data_dir=data_dir)
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        chat_id = stub.CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt="keep me"), metadata=AUTH
        ).parsed_chat.id
        slow = (*AUTH, ("x-echo-chunks", "1000"), ("x-echo-delay-ms", "50"))
        job_id = stub.SubmitDeepResearcherJob(ask("slow research"), metadata=slow).job_id
        deadline = time.monotonic() + 10
        while True:
            job = stub.GetDeepResearcherJob(
                pb.GetDeepResearcherJobRequest(job_id=job_id), metadata=AUTH
            )
            if job.status == "running" and job.result:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    server.proc.kill()
    server.proc.communicate()

    restarted = connect(
        start_server(data_dir=data_dir, api_keys=frozenset({KEY}), job_poll_s=0.1).target
    )
    job = restarted.GetDeepResearcherJob(
        pb.GetDeepResearcherJobRequest(job_id=job_id), metadata=AUTH
    )
    # The dead server's lease still holds: nobody runs the job, its chunks are kept.
    assert (job.status, job.error) == ("running", "")
    assert job.result
    deadline = time.monotonic() + 15
    while job.status != "completed":  # the lease runs out: the job runs again, from scratch
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = restarted.GetDeepResearcherJob(
            pb.GetDeepResearcherJobRequest(job_id=job_id), metadata=AUTH
        )
    assert job.error == ""
    assert "".join(json.loads(chunk.chunk)[0]["content"] for chunk in job.result).startswith(
        "Question: slow research"
    )
    sessions = restarted.GetChatSessions(pb.GetChatSessionsRequest(), metadata=AUTH).chat_sessions
    assert chat_id in [session.id for session in sessions]


MODULE = (sys.executable, "-m", "apex_grpc_server")
GRPC_CORE_LOG = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\]", re.MULTILINE)
APEX_GRPC_SERVE = (sys.executable, "-m", "apex_grpc.cli", "serve")


def run_serve(entry: tuple[str, ...], *flags: str, env: dict[str, str] | None = None):
    """`serve` run to its end (it fails at once in these tests)."""
    return subprocess.run(
        [*entry, *flags], capture_output=True, text=True, timeout=30, env=env, check=False
    )


@pytest.mark.parametrize("entry", [MODULE, APEX_GRPC_SERVE], ids=["module", "apex-grpc"])
def test_a_busy_port_is_one_line_before_anything_is_written(process, tmp_path, entry) -> None:
    port = process().target.rsplit(":", 1)[1]
    data_dir = tmp_path / "other"
    proc = run_serve(
        entry, "--engine", "echo", "--api-key", KEY, "--port", port, "--data-dir", str(data_dir)
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"apex-grpc serve: error: port {port} on 127.0.0.1 is already in use (another"
        " apex-grpc serve?): stop that server, or pick another port with --port"
        " (--port 0 picks a free one)\n"
    )  # one line: no grpc core log ("E1126 ... add_port.cc ... Address already in use")
    assert not GRPC_CORE_LOG.search(proc.stderr)
    assert proc.stdout == ""
    assert not data_dir.exists()


def test_grpc_core_logs_stay_off_the_terminal_unless_debug(tmp_path) -> None:
    flags = ("--engine", "echo", "--api-key", KEY, "--data-dir", str(tmp_path / "data"))
    # A socket path too long for unix sockets passes our check (its folder exists) and
    # fails in grpc's own bind, which logs through grpc core.
    too_long = str(tmp_path / ("s" * 120))
    quiet = run_serve(MODULE, *flags, "--unix-socket", too_long)
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("apex-grpc serve: error: Failed to bind to address unix:")
    assert quiet.stderr.endswith("(run with --log-level debug for grpc's reason)\n")
    assert quiet.stderr.count("\n") == 1
    loud = run_serve(MODULE, *flags, "--unix-socket", too_long, "--log-level", "debug")
    assert GRPC_CORE_LOG.search(loud.stderr)  # e.g. "E1126 12:56:01.204850 22949 add_port.cc:83]"
    assert not GRPC_CORE_LOG.search(quiet.stderr)
    missing = run_serve(MODULE, *flags, "--unix-socket", str(tmp_path / "no" / "sock"))
    assert missing.returncode == 1
    assert missing.stderr == (
        f"apex-grpc serve: error: cannot listen on unix:{tmp_path / 'no' / 'sock'}:"
        f" no folder {tmp_path / 'no'}\n"
    )
    assert not (tmp_path / "data").exists()


def test_index_command_then_search(tmp_path, start_server, connect, auth, capsys) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zebra.md").write_text("# Zebras\n\nZebras are striped African equids.\n")
    (docs / "page.html").write_text(
        "<html><title>Quokka page</title><body><p>The quokka smiles.</p></body></html>"
    )
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        json.dumps(
            {"url": "https://example.org/okapi", "title": "Okapi", "content": "The okapi is shy."}
        )
        + "\n"
    )
    data_dir = tmp_path / "data"
    assert _cli.main(["index", str(docs), str(feed), "--data-dir", str(data_dir)]) == 0
    assert "indexed 3 documents" in capsys.readouterr().out
    assert _cli.main(["index", str(docs), "--data-dir", str(data_dir)]) == 0
    assert "0 added, 0 updated, 2 unchanged" in capsys.readouterr().out

    stub = connect(start_server(data_dir=data_dir).target)

    def urls(query: str) -> list[str]:
        response = stub.WebRetrieval(pb.WebRetrievalRequest(search_query=query), metadata=auth)
        return [result.url for result in response.results]

    assert urls("zebras") == [(docs / "zebra.md").resolve().as_uri()]
    assert urls("quokka") == [(docs / "page.html").resolve().as_uri()]
    assert urls("okapi") == ["https://example.org/okapi"]
    # The index was not empty at the first start: the default corpus was not added.
    assert not urls("lambda expressions")


def test_index_takes_what_help_lists_and_skips_binary_files(
    tmp_path, start_server, connect, auth, capsys
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tapirs.md").write_text(
        "# Tapir facts\n\nThe **tapir** is a [large](https://example.org) mammal with a"
        " `trunk`.\n\n## Habitat\n\n> Tapirs live in _forests_ of South America.\n"
    )
    (docs / "notes.txt").write_text("Plain notes about tapirs.\n")
    (docs / "manual.rst").write_text("Tapirs\n======\n\nNot indexed: help does not list .rst.\n")
    (docs / "binary.txt").write_bytes(b"tapir\x00\x01\x02")
    (docs / "latin1.txt").write_bytes(b"caf\xe9 tapir")
    (docs / "image.png").write_bytes(b"\x89PNG tapir")
    data_dir = tmp_path / "data"
    assert _cli.main(["index", str(docs), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"indexed 2 documents into {data_dir / 'index.sqlite3'}: 2 added, 0 updated, 0 unchanged"
        " (2 new passages)\n"
        f"skipped 2 files (binary or not UTF-8): {docs / 'binary.txt'}, {docs / 'latin1.txt'}\n"
    )
    assert _cli.main(["index", str(docs / "notes.txt"), "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith("indexed 1 document into")

    stub = connect(start_server(data_dir=data_dir).target)
    found = stub.WebRetrieval(
        pb.WebRetrievalRequest(search_query="tapirs forests", n_results=5), metadata=auth
    ).results
    assert sorted(result.url.rsplit("/", 1)[1] for result in found) == ["notes.txt", "tapirs.md"]
    for result in found:  # no Markdown markup in what a search returns
        for markup in ("#", "**", "](", "`", "> ", "_forests_"):
            assert markup not in result.relevant and markup not in result.content
    tapirs = next(result for result in found if result.url.endswith("tapirs.md"))
    assert "The tapir is a large mammal with a trunk." in tapirs.content


def test_index_help_lists_exactly_what_it_indexes() -> None:
    from apex_grpc_server._search.documents import FILE_SUFFIXES

    assert FILE_SUFFIXES == (".txt", ".md", ".markdown", ".html", ".htm")
    helped = subprocess.run(
        [*MODULE, "index", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "folders of .txt, .md, .markdown, .html, .htm files" in " ".join(helped.split())


def test_index_reports_bad_input(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "u"}\n')
    assert _cli.main(["index", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert "bad.jsonl:1: needs string 'url' and 'content'" in capsys.readouterr().err
    assert _cli.main(["index", str(tmp_path / "missing"), "--data-dir", str(tmp_path)]) == 2


@pytest.mark.parametrize("entry", [MODULE, APEX_GRPC_SERVE], ids=["module", "apex-grpc"])
def test_serve_without_keys_exits_2_and_creates_nothing(tmp_path, entry) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_GRPC_")}
    data_dir = tmp_path / "data"
    proc = run_serve(entry, "--engine", "echo", "--data-dir", str(data_dir), env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("apex-grpc serve: error: no API keys configured: pass --api-key")
    assert proc.stderr.count("\n") == 1
    assert not data_dir.exists()


def test_flags_and_environment(tmp_path, monkeypatch) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nalpha\n\nbeta\n")
    monkeypatch.setenv("APEX_GRPC_API_KEYS", "env-1, env-2")
    monkeypatch.setenv("APEX_GRPC_ENGINE", "echo")
    monkeypatch.setenv("APEX_GRPC_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("OPENAI_API_KEY", "upstream")

    def parse(*argv: str):
        parser = argparse.ArgumentParser()
        _cli.add_serve_arguments(parser)
        return _cli.config_from_args(parser.parse_args(argv))

    config = parse()
    assert config.api_keys == {"env-1", "env-2"}
    assert config.engine == "echo"
    assert config.knobs_enabled
    assert config.data_dir == tmp_path / "env-data"
    assert config.openai_api_key == "upstream"
    config = parse("--api-key", "flag", "--api-keys-file", str(keys_file), "--engine", "local")
    assert config.api_keys == {"flag", "alpha", "beta"}
    assert not config.knobs_enabled
    assert parse("--echo-delay", "0.5", "--no-test-knobs").echo_delay_s == 0.5
    monkeypatch.delenv("APEX_GRPC_ENGINE")
    assert parse().engine == "local"


def test_register_adds_serve_and_index() -> None:
    parser = argparse.ArgumentParser(prog="apex-grpc")
    _cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--engine", "echo", "--port", "0"])
    assert args.func is _cli.run_serve
    assert args.port == 0
    args = parser.parse_args(["index", "docs"])
    assert args.func is _cli.run_index
    assert args.paths == [Path("docs")]


def test_cli_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import apex_grpc_server.cli; "
        "mods = [m for m in ('apex_grpc_server._runtime.server', 'llama_cpp', 'httpx', 'sqlite3') "
        "if m in sys.modules]; print(mods)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    ).stdout
    assert out.strip() == "[]"


def test_serve_names_a_bad_or_unreachable_database_without_its_password(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_GRPC_")}
    flags = ("--engine", "echo", "--api-key", KEY, "--data-dir", str(tmp_path / "data"))
    bad = run_serve(MODULE, *flags, "--database", "mysql://u:s3cret@h/db", env=env)
    assert bad.returncode == 2
    assert bad.stderr == (
        "apex-grpc serve: error: database_url: unknown scheme 'mysql' in 'mysql://u:***@h/db'"
        " (expected postgresql://, postgres:// or sqlite:///)\n"
    )
    env["APEX_GRPC_DATABASE_URL"] = "postgresql://apex:s3cret@127.0.0.1:1/apex"
    down = run_serve(MODULE, *flags, env=env)
    assert "s3cret" not in down.stderr + down.stdout
    if importlib.util.find_spec("psycopg") is None:  # the oldest-dependencies suite
        assert down.returncode == 2
        assert "pip install 'apex-grpc[postgres]'" in down.stderr
    else:
        assert down.returncode == 1
        assert down.stderr.startswith(
            "apex-grpc serve: error: cannot connect to PostgreSQL at"
            " postgresql://apex:***@127.0.0.1:1/apex: "
        )
        assert down.stderr.count("\n") == 1
