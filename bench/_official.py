"""The official SDK (macrocosmos 2.1.0), installed in a virtualenv of its own.

It is the last release with Apex; its sync client runs ``asyncio.run`` and
opens a new channel per call. The venv lives in .venv-official and is made
on first use (it needs the package registry). bench/_probe.py runs it.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-official"
PACKAGE = "macrocosmos==2.1.0"


def python() -> Path:
    """The official SDK venv's interpreter, creating the venv when missing."""
    interpreter = VENV / "bin" / "python"
    marker = VENV / f".installed-{PACKAGE}"
    if not marker.exists():
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run(
            [
                str(interpreter),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PACKAGE,
            ],
            check=True,
        )
        marker.write_text("")
    return interpreter


if __name__ == "__main__":  # pragma: no cover - manual helper
    print(python(), file=sys.stderr)
