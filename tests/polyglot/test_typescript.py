"""examples/typescript: a Connect-ES client generated from protos/, on Node, against the server.

The fixture installs the pinned packages (`npm ci`, skipped while node_modules
was installed from the same package-lock.json), generates the code with buf and
the local protoc-gen-es, and compiles it with tsc; each snippet then runs with
node against a fresh echo server, over gRPC and over each protocol of its HTTP face.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest

from .conftest import BUF, ROOT, SNIPPETS, Command, check_snippet, run_step

EXAMPLE = ROOT / "examples" / "typescript"
NODE_MAJOR = 20
# Where `npm ci` records which package-lock.json node_modules came from.
INSTALLED_FROM = EXAMPLE / "node_modules" / ".installed-from-lock.sha256"
SCRIPTS = {"chat": "chat_stream", "search": "web_retrieval", "wrong-key": "wrong_key"}

pytestmark = pytest.mark.timeout(300)  # a cold `npm ci` downloads ~27 MB


def node_missing() -> str | None:
    """Why the example cannot run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: the TypeScript example needs Node.js {NODE_MAJOR}+"
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < NODE_MAJOR:
        return f"node {version} is too old: the pinned Connect-ES needs Node.js {NODE_MAJOR}+"
    return None


def install() -> None:
    """`npm ci`, unless node_modules already matches package-lock.json."""
    lock = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    if INSTALLED_FROM.is_file() and INSTALLED_FROM.read_text() == lock:
        return
    run_step(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], EXAMPLE, timeout=240)
    INSTALLED_FROM.write_text(lock)


@pytest.fixture(scope="module")
def typescript_example() -> Command:
    reason = node_missing()
    if reason is not None:
        pytest.skip(reason)
    install()
    for output in ("gen", "dist"):  # nothing stale can stand in for this run's output
        shutil.rmtree(EXAMPLE / output, ignore_errors=True)
    path = f"{BUF.parent}{os.pathsep}{os.environ['PATH']}"
    run_step(["npm", "run", "--silent", "generate"], EXAMPLE, timeout=60, PATH=path)
    run_step(["npm", "run", "--silent", "build"], EXAMPLE, timeout=120)

    def command(snippet: str) -> Sequence[str]:
        return ["node", f"dist/src/{SCRIPTS[snippet]}.js"]

    return command


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_typescript_snippet(
    typescript_example: Command, snippet: str, server_env: dict[str, str]
) -> None:
    check_snippet(typescript_example, snippet, server_env, EXAMPLE)


@pytest.mark.parametrize("transport", ["connect-json", "connect-proto", "grpc-web"])
@pytest.mark.parametrize("snippet", SNIPPETS)
def test_typescript_snippet_over_http(
    typescript_example: Command, snippet: str, transport: str, server_env: dict[str, str]
) -> None:
    # The same snippets, the same expected text, over the server's HTTP face.
    env = {
        **server_env,
        "MACROCOSMOS_BASE_URL": server_env["APEX_HTTP_BASE_URL"],
        "APEX_TRANSPORT": transport,
    }
    check_snippet(typescript_example, snippet, env, EXAMPLE)
