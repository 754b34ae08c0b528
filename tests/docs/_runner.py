"""Running one page's snippets in order, as a reader following the page would.

Python blocks run in this process, with the page's environment and a
scratch folder as the working directory. A guide's blocks share one
namespace (a block may use a client made by an earlier one); README.md's
blocks, which readers paste one at a time, each run in a fresh namespace,
wherever they are shown, so one that needs an earlier block fails. Shell blocks run in bash (``-e -o
pipefail``) with the venv's console scripts (``apex-grpc``) first on PATH;
what they export carries over to the blocks after them.

Every page starts with a local echo server that accepts the key
``api-key`` and the environment the getting-started page exports for it
(MACROCOSMOS_BASE_URL, MACROCOSMOS_USE_HTTPS=false, APEX_API_KEY). The docs
write the local server's address as ``127.0.0.1:50051`` (its HTTP face's as
``127.0.0.1:8080``); the tests put the real ports there. A shell block that is
one ``apex-grpc serve ...`` command starts that server in the background (on
free ports, with a scratch ``--data-dir`` unless the block gives one); the
blocks after it talk to it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from cli._helpers import client_env

import apex_grpc as mc

from ._markdown import ROOT, Block

DOCS_PORT = "50051"
DOCS_HTTP_PORT = "8080"
DOCS_KEY = "api-key"
STANDALONE = frozenset({ROOT / "README.md"})
"""Files whose Python blocks must each run on their own, as if pasted into a new interpreter."""
SHELL_TIMEOUT_S = 180.0
SERVE_START_TIMEOUT_S = 120.0
# Where the docs' servers keep their data is the page's affair, not the caller's.
_SERVER_ENV = ("APEX_GRPC_DATA_DIR", "APEX_GRPC_API_KEYS", "XDG_DATA_HOME")


class SnippetFailed(AssertionError):
    """A snippet that should have worked did not."""

    def __init__(self, block: Block, problem: str, output: str) -> None:
        shown = output.strip() or "(no output)"
        super().__init__(
            f"{block.where}: the {block.language} snippet failed: {problem}\n"
            f"--- snippet ---\n{block.code}--- output ---\n{shown}"
        )


class PageRun:
    """One page's run: its environment, namespace, scratch folder and servers."""

    def __init__(self, scratch: Path, echo_target: str) -> None:
        self.scratch = scratch
        self.home = scratch / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.target = echo_target
        """Where ``127.0.0.1:50051`` in a snippet points now."""
        self.http_target = f"127.0.0.1:{DOCS_HTTP_PORT}"
        """Where ``127.0.0.1:8080`` points: the HTTP face of the last server a block started."""
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        """The page's shared namespace."""
        self._standalone: list[dict[str, Any]] = []
        # What the getting-started page exports, for the echo server.
        self.env = client_env(f"http://{echo_target}", DOCS_KEY)
        for name in _SERVER_ENV:
            self.env.pop(name, None)
        self.env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}",
            HOME=str(self.home),
        )
        self._servers: list[subprocess.Popen[bytes]] = []
        for name in ("examples", "protos"):  # what snippets may refer to by relative path
            link = scratch / name
            if not link.exists():
                link.symlink_to(ROOT / name)

    def run(self, block: Block) -> None:
        """Run one snippet; raises SnippetFailed if it fails."""
        code = block.code.replace(f"127.0.0.1:{DOCS_PORT}", self.target).replace(
            f"localhost:{DOCS_PORT}", self.target
        )
        code = code.replace(f"127.0.0.1:{DOCS_HTTP_PORT}", self.http_target)
        if block.language == "python":
            self._python(block, code)
        elif _serve_command(code) is not None:
            self._serve(block, _serve_command(code) or [])
        else:
            self._shell(block, code)

    def close(self) -> None:
        """Close the clients the page's snippets left open; stop the servers it started."""
        for namespace in (self.namespace, *self._standalone):
            for value in namespace.values():
                if isinstance(value, mc.ApexClient):
                    value.close()
            namespace.clear()
        for process in reversed(self._servers):
            _stop(process)

    def _python(self, block: Block, code: str) -> None:
        # Padding keeps tracebacks' line numbers those of the Markdown file.
        compiled = compile("\n" * (block.line - 1) + code, str(block.path), "exec")
        output = io.StringIO()
        namespace = self.namespace
        if block.path in STANDALONE:
            namespace = {"__name__": "__main__"}
            self._standalone.append(namespace)
        with (
            mock.patch.dict(os.environ, self.env, clear=True),
            _working_directory(self.scratch),
            contextlib.redirect_stdout(output),
            contextlib.redirect_stderr(output),
        ):
            try:
                exec(compiled, namespace)
            except BaseException as error:  # any failure of a snippet is reported
                frames = error.__traceback__
                error.with_traceback(frames.tb_next if frames else None)  # from the snippet on
                problem = "".join(traceback.format_exception(error))
                raise SnippetFailed(block, problem, output.getvalue()) from None

    def _shell(self, block: Block, code: str) -> None:
        dump = self.scratch / ".env-after"
        script = f"{code}\nenv -0 > {shlex.quote(str(dump))}\n"
        try:
            result = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                env=self.env,
                cwd=self.scratch,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise SnippetFailed(block, f"still running after {SHELL_TIMEOUT_S:g} s", "") from error
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise SnippetFailed(block, f"exit status {result.returncode}", output)
        pairs = dump.read_bytes().decode().split("\0")
        self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    def _serve(self, block: Block, argv: list[str]) -> None:
        folder = self.scratch / f"serve-{len(self._servers)}"
        try:
            served = ServeProcess.start(argv, folder, self.env)
        except ServeFailed as error:
            raise SnippetFailed(block, str(error), error.output) from None
        self._servers.append(served.process)
        self.target = f"127.0.0.1:{served.port}"
        if served.http_port:
            self.http_target = f"127.0.0.1:{served.http_port}"


class ServeFailed(Exception):
    """``apex-grpc serve`` exited, or did not serve in time."""

    def __init__(self, problem: str, output: str) -> None:
        super().__init__(problem)
        self.output = output


@dataclass
class ServeProcess:
    """An ``apex-grpc serve`` started in the background on a free port."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    """Holds ``stdout`` and ``stderr`` (the server's output) and, by default, its data."""
    http_port: int | None = None
    """The HTTP face's port, when the command gave ``--http-port`` (run on a free one)."""

    @classmethod
    def start(cls, argv: list[str], folder: Path, env: dict[str, str]) -> ServeProcess:
        """Run `argv` with ``--port 0`` (and a ``--data-dir`` in `folder` unless given)."""
        folder.mkdir(parents=True)
        port_file = folder / "port"
        extra = ["--port", "0", "--port-file", str(port_file)]
        if "--http-port" in argv:
            argv = list(argv)
            argv[argv.index("--http-port") + 1] = "0"
        if "--data-dir" not in argv:
            extra += ["--data-dir", str(folder / "data")]
        with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
            process = subprocess.Popen(
                [*argv, *extra],
                env=env,
                cwd=folder.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                state = "exited" if process.poll() is not None else "did not start in time"
                output = (folder / "stdout").read_text() + (folder / "stderr").read_text()
                raise ServeFailed(f"the server {state}", output)
            time.sleep(0.05)
        served = cls(process, int(port_file.read_text()), folder)
        if "--http-port" in argv:  # its port is in the ready lines, printed with the port file
            while "over HTTP" not in served.stdout() and process.poll() is None:
                time.sleep(0.05)
            served.http_port = int(served.stdout().split("over HTTP")[1].split(":")[-1])
        return served

    def stdout(self) -> str:
        """What the server printed on stdout so far."""
        return (self.folder / "stdout").read_text()

    def stop(self) -> None:
        """Stop the server as Ctrl-C does (SIGINT: no drain delay), SIGKILL after 15 s."""
        _stop(self.process)


def apex_grpc_command(*args: str) -> list[str]:
    """The venv's ``apex-grpc`` console script with `args`."""
    return [str(Path(sys.executable).parent / "apex-grpc"), *args]


def _serve_command(code: str) -> list[str] | None:
    """The argv of a block that is one ``apex-grpc serve`` command, else None."""
    commands = [line for line in code.splitlines() if line.strip() and not line.startswith("#")]
    if len(commands) != 1:
        return None
    argv = shlex.split(commands[0], comments=True)
    if argv[:2] != ["apex-grpc", "serve"]:
        return None
    return apex_grpc_command(*argv[1:])


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
