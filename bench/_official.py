"""The official SDK (macrocosmos 2.1.0), measured in a virtualenv of its own.

It is the last release with Apex; its sync client runs ``asyncio.run`` and
opens a new channel per call. The venv lives in .venv-official and is made
on first use (it needs the package registry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from ._scenarios import MESSAGES
from ._server import BENCH_KEY

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-official"
PACKAGE = "macrocosmos==2.1.0"

_PROBE = """
import json, sys, time
import macrocosmos as mc
target, key, duration, expected = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
messages = json.loads(sys.argv[5])
client = mc.ApexClient(api_key=key, base_url=target, secure=False, app_name="bench")
def call():
    response = client.chat.completions.create(messages=messages)
    assert response.choices[0].message.content == expected, "official SDK content"
call()
done, started = 0, time.perf_counter()
while time.perf_counter() - started < duration:
    call()
    done += 1
print(json.dumps({"rate": done / (time.perf_counter() - started)}))
"""


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


def official_unary_rate(target: str, expected: str, duration: float) -> float:
    """Calls per second of the official SDK's sync chat.completions.create."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}
    out = subprocess.run(
        [
            str(python()),
            "-c",
            _PROBE,
            target,
            BENCH_KEY,
            str(duration),
            expected,
            json.dumps(MESSAGES),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rate"])


if __name__ == "__main__":  # pragma: no cover - manual helper
    print(python(), file=sys.stderr)
