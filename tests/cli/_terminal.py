"""A command running in a pseudo-terminal, as a user at a keyboard would see it.

The child gets the terminal as its controlling terminal (stdin, stdout and
stderr all on it, in a session of its own), so typing Ctrl-C makes the
terminal send SIGINT and echo ``^C``, and Ctrl-D is end of input, exactly
as in a real shell. Everything the child writes is kept in `screen`
(``\\n`` arrives as ``\\r\\n``, the terminal's own newline translation).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

from ._helpers import ROOT

CTRL_C = b"\x03"
CTRL_D = b"\x04"


def _take_terminal() -> None:
    # In the child, after setsid: fd 0 (the terminal) becomes the controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``with Terminal([...], env) as term:`` runs the command on a fresh pseudo-terminal."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self._primary, secondary = pty.openpty()
        self.process = subprocess.Popen(
            list(command),
            env={**env, "TERM": "dumb"},  # plain text: no colours, no cursor movement
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(secondary)
        self.screen = b""

    def read_until(self, text: bytes, timeout: float = 15) -> bytes:
        """Read until `text` appears after what was already read; returns the new output."""
        start = len(self.screen)
        deadline = time.monotonic() + timeout
        while text not in self.screen[start:]:
            if not self._read_some(deadline):
                raise AssertionError(f"exited before {text!r} appeared; the screen:\n{self.text()}")
        return self.screen[start:]

    def read_to_end(self, timeout: float = 15) -> bytes:
        """Read until the child closes the terminal (it exited); returns the new output."""
        start = len(self.screen)
        deadline = time.monotonic() + timeout
        while self._read_some(deadline):
            pass
        return self.screen[start:]

    def _read_some(self, deadline: float) -> bool:
        """Read what arrives within half a second; False once the child closed the terminal."""
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; the screen:\n{self.text()}")
        ready, _, _ = select.select([self._primary], [], [], 0.5)
        if not ready:
            return True
        try:
            data = os.read(self._primary, 65536)
        except OSError:  # EIO: every copy of the terminal's other side is closed
            data = b""
        self.screen += data
        return bool(data)

    def type(self, keys: bytes) -> None:
        """Type at the keyboard (a line ends with ``\\n``)."""
        os.write(self._primary, keys)

    def wait(self, timeout: float = 15) -> int:
        """Read until the child exits; returns its exit status."""
        self.read_to_end(timeout)
        return self.process.wait(timeout=timeout)

    def text(self) -> str:
        """Everything shown so far, with the terminal's ``\\r\\n`` as ``\\n``."""
        return self.screen.decode(errors="replace").replace("\r\n", "\n")

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._primary)
