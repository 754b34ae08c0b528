"""The examples in other languages, run against a local server with a known search index.

Each language's test module builds its example once (a module fixture that
returns how to run a snippet) and runs every snippet in SNIPPETS through
`check_snippet`, which compares the output with what the echo engine and the
index below make the only right answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"

DOCUMENTS = [
    {
        "url": "https://example.org/ai-weekly",
        "title": "AI weekly",
        "content": "AI weekly. The latest news about AI: small open models now run on laptops.",
    },
    {
        "url": "https://example.org/tomatoes",
        "title": "Growing tomatoes",
        "content": "Tomatoes need six hours of sun a day and steady watering.",
    },
]
ECHO_CHUNKS, ECHO_CHUNK_SIZE = 8, 16
# The seed snippet's user message; the echo engine repeats it, cut to 8 x 16 characters.
PROMPT = "Hello, how are you?"

EXPECTED = {
    "chat": (PROMPT * ECHO_CHUNKS)[: ECHO_CHUNKS * ECHO_CHUNK_SIZE] + "\n",
    # "latest news about AI" matches the first document only.
    "search": f"{DOCUMENTS[0]['url']}\n  {DOCUMENTS[0]['content']}\n",
    "wrong-key": "Unauthenticated: invalid API key\n",
}
SNIPPETS = tuple(EXPECTED)

Command = Callable[[str], Sequence[str]]
"""A built example: the command line that runs one snippet ("chat", "search", "wrong-key")."""


NODE_MAJOR = 20


def node_missing() -> str | None:
    """Why the Node examples cannot run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: the TypeScript examples need Node.js {NODE_MAJOR}+"
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < NODE_MAJOR:
        return f"node {version} is too old: the pinned Connect-ES needs Node.js {NODE_MAJOR}+"
    return None


def npm_ci(example: Path) -> None:
    """`npm ci` in `example`, unless its node_modules already matches its package-lock.json.

    The lock's hash is recorded in node_modules once installed, so a warm run
    costs nothing and a changed lock reinstalls.
    """
    installed_from = example / "node_modules" / ".installed-from-lock.sha256"
    lock = hashlib.sha256((example / "package-lock.json").read_bytes()).hexdigest()
    if installed_from.is_file() and installed_from.read_text() == lock:
        return
    run_step(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], example, timeout=240)
    installed_from.write_text(lock)


def run_step(command: Sequence[str], cwd: Path, *, timeout: float, **env: str) -> None:
    """Run a build step; fail the test with its output if it fails."""
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@pytest.fixture(scope="module")
def indexed_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server data folder whose search index holds DOCUMENTS (via `apex-grpc index`)."""
    folder = tmp_path_factory.mktemp("polyglot")
    documents = folder / "documents.jsonl"
    documents.write_text("".join(json.dumps(d) + "\n" for d in DOCUMENTS))
    index = [sys.executable, "-m", "apex_grpc.cli", "index", "--data-dir", str(folder / "data")]
    run_step([*index, str(documents)], ROOT, timeout=60)
    return folder / "data"


@pytest.fixture
def server_env(
    start_server: Callable[..., Any], indexed_data_dir: Path, api_key: str
) -> dict[str, str]:
    """The environment of an example pointed at a fresh echo server, in plaintext."""
    server = start_server(
        data_dir=indexed_data_dir,
        default_corpus=False,
        echo_chunks=ECHO_CHUNKS,
        echo_chunk_size=ECHO_CHUNK_SIZE,
        http_port=0,  # the HTTP face too: the TypeScript example runs over each protocol
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}
    env.update(
        # As `apex-grpc serve` prints it: the http:// scheme says plaintext on its own.
        MACROCOSMOS_BASE_URL=f"http://{server.target}",
        MACROCOSMOS_USE_HTTPS="false",
        APEX_API_KEY=api_key,
        APEX_HTTP_BASE_URL=f"http://127.0.0.1:{server.http_port}",
    )
    return env


def check_snippet(command: Command, snippet: str, env: dict[str, str], cwd: Path) -> None:
    """Run one snippet of a built example; its stdout must be exactly the expected answer."""
    result = subprocess.run(
        list(command(snippet)),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED[snippet], result.stderr
