"""examples/browser in a real browser: a page on another origin streams an answer over HTTP.

The fixture builds the page (`npm ci` cached like the TypeScript example's, buf +
protoc-gen-es, esbuild) and serves its folder from a port of its own: the page's
origin. `apex-grpc serve --engine echo --http-port 0 --cors-origin <that origin>`
runs as a child process. Headless Chromium (Debian's, never a downloaded one)
loads the page, which streams ChatCompletionStream into itself with
@connectrpc/connect-web; `--dump-dom` prints the page once its network is quiet,
and the test reads the answer off the page. A page from an origin the server was
not told about must get nothing: the browser's CORS check refuses it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import BUF, ROOT, node_missing, npm_ci, run_step

EXAMPLE = ROOT / "examples" / "browser"
INSTALL_CHROMIUM = "apt-get install -y chromium chromium-driver (as root)"
KEY = "browser-test-key"
PROMPT = "Hello from the browser"  # the page's default prompt (index.html)
ECHO = (PROMPT * 8)[:128]  # the echo engine's answer: 8 chunks of 16 characters
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=30000",  # dump once the page's stream has ended (or 30 s passed)
    "--dump-dom",
)

pytestmark = pytest.mark.timeout(300)


def chromium() -> str:
    """The system Chromium's path, or skip naming how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(f"Chromium is not installed: {INSTALL_CHROMIUM}")
    return found


@pytest.fixture(scope="module")
def page_folder() -> Path:
    """The built page: index.html and dist/app.js."""
    reason = node_missing()
    if reason is not None:
        pytest.skip(reason)
    chromium()
    npm_ci(EXAMPLE)
    for output in ("gen", "dist"):
        shutil.rmtree(EXAMPLE / output, ignore_errors=True)
    path = f"{BUF.parent}{os.pathsep}{os.environ['PATH']}"
    run_step(["npm", "run", "--silent", "generate"], EXAMPLE, timeout=60, PATH=path)
    run_step(["npm", "run", "--silent", "build"], EXAMPLE, timeout=120)
    return EXAMPLE


@pytest.fixture(scope="module")
def origins(page_folder: Path) -> Iterator[Callable[[], str]]:
    """`origin()`: serve the page from a new port; its origin, e.g. http://127.0.0.1:40123."""
    servers: list[ThreadingHTTPServer] = []

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    def origin() -> str:
        handler = functools.partial(Quiet, directory=str(page_folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield origin
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page_origin(origins: Callable[[], str]) -> str:
    """The origin the server lets in."""
    return origins()


@pytest.fixture(scope="module")
def http_url(page_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`apex-grpc serve --engine echo --http-port 0 --cors-origin <page origin>`: its HTTP URL."""
    command = [
        sys.executable, "-m", "apex_grpc.cli", "serve", "--engine", "echo", "--port", "0",
        "--http-port", "0", "--cors-origin", page_origin, "--api-key", KEY,
        "--data-dir", str(tmp_path_factory.mktemp("browser-server")), "--no-default-corpus",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if "over HTTP" in line:
                url = line.rsplit(" ", 1)[-1].strip()
                break
        assert url, f"the server did not start: {proc.communicate(timeout=10)[1]}"
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def load(origin: str, http_url: str, protocol: str, tmp_path: Path) -> dict[str, str]:
    """Load the page from `origin` in headless Chromium; the answer element's state and text."""
    url = f"{origin}/index.html?server={http_url}&key={KEY}&protocol={protocol}&autostart=1"
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    found = re.search(
        r'<pre id="answer" data-state="(\w+)"(?: data-chunks="(\d+)")?>(.*?)</pre>',
        result.stdout,
        re.S,
    )
    assert found, f"no answer element in the page:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return {"state": found[1], "chunks": found[2] or "0", "text": found[3]}


@pytest.mark.parametrize("protocol", ["connect", "connect-proto", "grpc-web"])
def test_a_page_on_another_origin_streams_an_answer(
    page_origin: str, http_url: str, protocol: str, tmp_path: Path
) -> None:
    answer = load(page_origin, http_url, protocol, tmp_path)
    assert answer == {"state": "done", "chunks": "8", "text": ECHO}


def test_a_page_from_an_origin_not_allowed_gets_nothing(
    origins: Callable[[], str], http_url: str, tmp_path: Path
) -> None:
    answer = load(origins(), http_url, "connect", tmp_path)
    assert answer["state"] == "error"
    assert PROMPT not in answer["text"]
