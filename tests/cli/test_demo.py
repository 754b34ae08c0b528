"""The one-command demo: ``python examples/demo`` (what ``make demo`` runs)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._helpers import ROOT, run

DEMO = (sys.executable, str(ROOT / "examples" / "demo"))


def demo_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}


def assert_nothing_listens(output: str) -> None:
    match = re.search(r"serving apex\.v1\.ApexService on 127\.0\.0\.1:(\d+)", output)
    assert match, output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(match.group(1)))) != 0, "the server is still up"


def test_demo_on_the_echo_engine() -> None:
    result = run([*DEMO, "--engine", "echo"], demo_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("seed_chat.py", "seed_chat_stream.py", "seed_web_search.py"):
        assert f"examples/{name} ===" in out
        # The snippet's source is shown before its output.
        first_line = (ROOT / "examples" / name).read_text().splitlines()[0]
        assert f"    {first_line}" in out
    assert 'content: "Write a short story about a cosmonaut' in out  # seed_chat.py's answer
    assert "\nHello, how are you?Hello" in out  # the streamed answer
    assert 1 <= out.count("results {") <= 3  # the web search (n_results=3)
    assert "=== Done: the server is stopped ===" in out
    assert re.search(r"streaming chat +\d+\.\d s  ok", out)
    assert_nothing_listens(out)


NO_LLAMA = f"""
import runpy, sys
sys.modules["llama_cpp"] = None  # as if llama-cpp-python were not installed
sys.argv = ["demo"]
runpy.run_path({str(ROOT / "examples" / "demo")!r}, run_name="__main__")
"""


def test_without_the_model_it_says_how_to_install_it() -> None:
    result = run([sys.executable, "-c", NO_LLAMA], demo_env())
    assert result.returncode == 1
    assert "llama-cpp-python is not installed" in result.stderr
    assert "pip install 'apex-grpc[llm]'" in result.stderr
    assert "python examples/demo --engine echo" in result.stderr
    assert "serving" not in result.stdout  # no silent fallback to another engine


def test_without_the_snippets_it_says_where_to_run(tmp_path: Path) -> None:
    result = run([*DEMO, "--engine", "echo", "--examples", str(tmp_path)], demo_env())
    assert result.returncode == 1
    assert result.stderr.startswith("error: seed_*.py not found")


def fake_examples(folder: Path, chat_snippet: str) -> Path:
    """seed_*.py copies where seed_chat.py is replaced by `chat_snippet`."""
    folder.mkdir()
    for name in ("seed_chat_stream.py", "seed_web_search.py"):
        shutil.copy(ROOT / "examples" / name, folder / name)
    (folder / "seed_chat.py").write_text(chat_snippet)
    return folder


def test_a_failing_snippet_fails_the_demo_and_stops_the_server(tmp_path: Path) -> None:
    examples = fake_examples(tmp_path / "examples", "raise SystemExit(3)\n")
    result = run([*DEMO, "--engine", "echo", "--examples", str(examples)], demo_env())
    assert result.returncode == 1
    assert "seed_chat.py failed: exit 3" in result.stdout
    assert re.search(r"chat +\d+\.\d s  exit 3", result.stdout)
    assert "Hello, how are you?" in result.stdout  # the other snippets still ran
    assert_nothing_listens(result.stdout)


def test_ctrl_c_stops_the_snippet_and_the_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "snippet.pid"
    snippet = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    examples = fake_examples(tmp_path / "examples", snippet)
    demo = subprocess.Popen(
        [*DEMO, "--engine", "echo", "--examples", str(examples)],
        env=demo_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and demo.poll() is None
        time.sleep(0.05)
    snippet_pid = int(pid_file.read_text())
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=30)
    assert demo.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "=== Done: the server is stopped ===" in out
    assert_nothing_listens(out)
    with pytest.raises(ProcessLookupError):  # the snippet was stopped too
        os.kill(snippet_pid, 0)


@pytest.mark.llm
def test_demo_on_the_real_model() -> None:
    result = run([*DEMO, "--max-new-tokens", "48"], demo_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "engine local, SmolLM2-135M-Instruct" in result.stdout
    assert 'model: "SmolLM2-135M-Instruct"' in result.stdout
    assert result.stdout.count("  ok") == 5
    assert_nothing_listens(result.stdout)


# A server that starts like `apex-grpc serve`, then crashes as a bad llama.cpp build does: at
# the first call, with SIGSEGV. Or, with FAKE_SERVER_EXIT, exits before it is serving.
CRASHING_SERVER = """\
import os, signal, socket, sys
args = sys.argv[1:]
print("INFO apex_grpc_server: loading SmolLM2-135M-Instruct", flush=True)
if os.environ.get("FAKE_SERVER_EXIT"):
    print("settings:", sorted(k for k in os.environ if k.startswith("APEX_GRPC_")))
    print("ERROR apex_grpc_server: no such model file", flush=True)
    sys.exit(int(os.environ["FAKE_SERVER_EXIT"]))
listener = socket.create_server(("127.0.0.1", 0))
with open(args[args.index("--port-file") + 1], "w") as port_file:
    port_file.write(str(listener.getsockname()[1]))
print("INFO apex_grpc_server: serving", flush=True)
listener.accept()
print("INFO apex_grpc_server: decoding a 30-token prompt", flush=True)
os.kill(os.getpid(), signal.SIGSEGV)
"""


def crashing_server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    script = tmp_path / "crashing_server.py"
    script.write_text(CRASHING_SERVER)
    return {**demo_env(), "APEX_GRPC_DEMO_SERVER": f"{sys.executable} {script}", **extra}


def test_a_server_that_dies_is_reported_not_a_client_traceback(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")  # the demo checks the local engine is installed first
    started = time.monotonic()
    result = run(DEMO, crashing_server_env(tmp_path), timeout=120)
    assert time.monotonic() - started < 60  # the client's retries are not waited out
    assert result.returncode == 1, result.stdout + result.stderr
    out, err = result.stdout, result.stderr
    assert "examples/seed_chat.py ===" in out
    assert "seed_chat_stream.py ===" not in out  # no snippet runs against a dead server
    assert re.search(r"chat +\d+\.\d s  server died", out)
    assert "=== Done: the server is stopped ===" in out
    assert "Traceback" not in err and "nothing is listening" not in err
    assert err.startswith(
        "The local server died during examples/seed_chat.py: killed by SIGSEGV (signal 11).\n"
        "Its last log lines (server.log):\n"
        "    INFO apex_grpc_server: loading SmolLM2-135M-Instruct\n"
    )
    last = err.rstrip().splitlines()
    assert last[-2] == "    INFO apex_grpc_server: decoding a 30-token prompt"
    assert "A native crash in the local engine (llama.cpp)" in last[-1]
    assert "tools/engine_check.py" in last[-1]  # what to run: check, rebuild if it crashes
    assert last[-1].endswith("python examples/demo --engine echo")


def test_a_server_that_exits_before_serving_is_reported(tmp_path: Path) -> None:
    env = crashing_server_env(
        tmp_path, FAKE_SERVER_EXIT="2", APEX_GRPC_DATABASE_URL="postgresql://db.internal/apex"
    )
    result = run([*DEMO, "--engine", "echo"], env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:4] == [
        "error: could not start the local server.",
        "The local server died before it was serving: exit status 2.",
        "Its last log lines (server.log):",
        "    INFO apex_grpc_server: loading SmolLM2-135M-Instruct",
    ]
    assert "no such model file" in result.stderr
    assert "    settings: []" in result.stderr  # the user's database is not the demo's
    assert "serving apex.v1.ApexService" not in result.stdout
