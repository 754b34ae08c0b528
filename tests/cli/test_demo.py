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
