"""examples/typescript: a Connect-ES client generated from protos/, on Node, against the server.

The fixture installs the pinned packages (`npm ci`, skipped while node_modules
was installed from the same package-lock.json), generates the code with buf and
the local protoc-gen-es, and compiles it with tsc; each snippet then runs with
node against a fresh echo server, over gRPC and over each protocol of its HTTP face.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import pytest

from .conftest import BUF, ROOT, SNIPPETS, Command, check_snippet, node_missing, npm_ci, run_step

EXAMPLE = ROOT / "examples" / "typescript"
SCRIPTS = {"chat": "chat_stream", "search": "web_retrieval", "wrong-key": "wrong_key"}

pytestmark = pytest.mark.timeout(300)  # a cold `npm ci` downloads ~27 MB


@pytest.fixture(scope="module")
def typescript_example() -> Command:
    reason = node_missing()
    if reason is not None:
        pytest.skip(reason)
    npm_ci(EXAMPLE)
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
