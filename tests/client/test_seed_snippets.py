"""The seed documentation's snippets run verbatim against the local server.

examples/seed_*.py hold them; where ../shared/SEED_EXAMPLES.md is present,
the first two are checked to be exactly its Python blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SEED_DOC = ROOT.parent / "shared" / "SEED_EXAMPLES.md"


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from apex_grpc_server import ServerConfig, run_server

    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        engine="echo",
        api_keys=frozenset({"api-key"}),  # the key the snippets use, verbatim
        data_dir=tmp_path_factory.mktemp("seed-server"),
    )
    with run_server(config) as server:
        yield server


def run_example(name: str, target: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MACROCOSMOS_BASE_URL": target,
        "MACROCOSMOS_USE_HTTPS": "false",
    }
    env.pop("APEX_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_examples_are_the_seed_blocks_verbatim() -> None:
    if not SEED_DOC.exists():
        pytest.skip(
            "the Apex documentation's seed snippets are not available to compare "
            "examples/seed_*.py with (they ship beside the project in CI, as "
            "../shared/SEED_EXAMPLES.md)"
        )
    blocks = re.findall(r"```python\n(.*?)```", SEED_DOC.read_text(), flags=re.S)
    assert blocks[0] == (EXAMPLES / "seed_chat.py").read_text()
    assert blocks[1] == (EXAMPLES / "seed_web_search.py").read_text()


def test_seed_chat(seed_server: Any) -> None:
    out = run_example("seed_chat.py", seed_server.target)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("id: ")
    assert 'content: "Write a short story' in out.stdout  # the echo engine repeats the prompt
    assert 'role: "assistant"' in out.stdout and 'finish_reason: "stop"' in out.stdout


def test_seed_web_search(seed_server: Any) -> None:
    out = run_example("seed_web_search.py", seed_server.target)
    assert out.returncode == 0, out.stderr
    results = out.stdout.count("results {")
    assert 1 <= results <= 3
    assert out.stdout.count("url: ") == out.stdout.count("relevant: ") == results


@pytest.mark.parametrize("name", ["seed_chat_stream.py", "seed_chat_stream_async.py"])
def test_seed_streaming(seed_server: Any, name: str) -> None:
    out = run_example(name, seed_server.target)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Hello, how are you?")


def test_wrong_key_is_a_typed_one_line_error(seed_server: Any) -> None:
    code = (
        "import apex_grpc as mc\n"
        "try:\n"
        "    mc.ApexClient(api_key='nope').chats.list_sessions()\n"
        "except mc.AuthenticationError as e:\n"
        "    print('AUTH', e.code.name)\n"
    )
    env = {**os.environ, "MACROCOSMOS_BASE_URL": seed_server.target, "MACROCOSMOS_USE_HTTPS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "AUTH UNAUTHENTICATED", out.stderr
