"""``pip install``, quiet unless it compiles something: then it says so and shows it is alive.

`make venv` runs ``python tools/pip_install.py ARGS...`` with the venv's
Python, which runs ``python -m pip install --disable-pip-version-check
ARGS...``. pip's progress lines are hidden, as with ``-q``; its warnings and
errors (stderr) pass through as they come. When pip builds a wheel from
source (no prebuilt wheel fits this machine), one line says so, with the
time to expect for a build known to be slow (llama-cpp-python compiles
llama.cpp for minutes), then a line every 30 seconds until the build ends.
The exit status is pip's; when pip fails, its hidden lines are printed too.
When the user has not set ``CMAKE_ARGS``, pip runs with the llama.cpp build
flags of tools/llama_build.py (the running CPU's instruction sets, no AMX),
and the compile line names them.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from llama_build import LLAMA, build_env, this_machine_args

HEARTBEAT_ENV = "APEX_GRPC_PIP_HEARTBEAT_S"
"""Seconds between the lines printed while a build runs (default 30)."""
DEFAULT_HEARTBEAT_S = 30.0
SLOW_BUILDS = {"llama-cpp-python": "about 5-10 minutes on 2 cores"}
"""What to expect from builds known to take long, by normalised project name."""

# pip's lines when stdout is not a terminal, e.g.
#   "  Building wheel for llama-cpp-python (pyproject.toml): started"
#   "  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done'"
_BUILD = re.compile(r"^\s*Building wheel for (?P<name>\S+) \(.*\): (?P<state>started|finished.*)$")


def normalise(name: str) -> str:
    """A project name as PEP 503 compares them (``llama_cpp.Python`` -> ``llama-cpp-python``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def minutes(seconds: float) -> str:
    """``7m05s`` (or ``42s`` under a minute)."""
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class BuildReporter:
    """Turns pip's build lines into the few lines a waiting user needs."""

    def __init__(self, out: TextIO, heartbeat_s: float, cmake_args: str = "") -> None:
        self._out = out
        self._cmake_args = cmake_args
        self._heartbeat_s = heartbeat_s
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def line(self, text: str) -> None:
        """Look at one line of pip's stdout."""
        match = _BUILD.match(text)
        if match is None:
            return
        name = normalise(match["name"])
        with self._lock:
            if match["state"] == "started":
                self._started[name] = time.monotonic()
                expected = SLOW_BUILDS.get(name)
                about = f" ({expected})" if expected else ""
                self._say(f"compiling {name} from source: no prebuilt wheel fits{about} ...")
                if name == LLAMA and self._cmake_args:
                    self._say(f"  with CMAKE_ARGS={self._cmake_args}")
            elif name in self._started:
                took = minutes(time.monotonic() - self._started.pop(name))
                done = "compiled" if match["state"].endswith("'done'") else "failed to compile"
                self._say(f"{done} {name} in {took}")

    def heartbeat(self) -> None:
        """Every heartbeat period until `stop`, a line for each build still running."""
        while not self._stop.wait(self._heartbeat_s):
            with self._lock:
                now = time.monotonic()
                for name, started in self._started.items():
                    self._say(f"  still compiling {name}: {minutes(now - started)} so far")

    def stop(self) -> None:
        """End the heartbeat."""
        self._stop.set()

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)


def run_pip(args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run pip install with `args` in `env`, reporting builds; returns pip's exit status."""
    heartbeat_s = float(env.get(HEARTBEAT_ENV) or DEFAULT_HEARTBEAT_S)
    reporter = BuildReporter(sys.stdout, heartbeat_s, env.get("CMAKE_ARGS", ""))
    beating = threading.Thread(target=reporter.heartbeat, daemon=True)
    beating.start()
    hidden: list[str] = []
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, bufsize=1, env=dict(env)
    ) as pip:
        assert pip.stdout is not None  # stdout=PIPE
        for text in pip.stdout:
            hidden.append(text)
            reporter.line(text.rstrip("\n"))
    reporter.stop()
    beating.join()
    if pip.returncode != 0:
        sys.stderr.writelines(hidden)
    # Killed by a signal (returncode -N): the status a shell reports for that, 128 + N.
    return pip.returncode if pip.returncode >= 0 else 128 - pip.returncode


def main(args: Sequence[str]) -> int:
    """Run pip install with `args`, llama.cpp's flags set for this CPU unless CMAKE_ARGS is."""
    return run_pip(args, build_env(os.environ, this_machine_args()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
