"""tools/engine_check.py, run by `make venv`: the local engine answers, or set-up repairs or fails.

The engine builds are fakes: $APEX_GRPC_ENGINE_PROBE names a child that kills
itself with SIGSEGV (until "rebuilt"), and a fake `pip` on PYTHONPATH records
the rebuild it is asked for. The Makefile's own recipe runs against a venv
whose python skips the real pip install.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "engine_check.py"

CRASHER = """\
import os, signal, sys
from pathlib import Path
if Path(sys.argv[1]).exists():
    print("answer: Hello")
else:
    print("features: " + os.environ.get("FAKE_FEATURES", "CPU : AVX2 = 1 |"), flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)
"""

FAKE_PIP = """\
import json, os, sys
from pathlib import Path
call = {"argv": sys.argv[1:], "cmake_args": os.environ.get("CMAKE_ARGS")}
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(call) + "\\n")
print("  Building wheel for llama_cpp_python (pyproject.toml): started", flush=True)
print("  Building wheel for llama_cpp_python (pyproject.toml): finished with status 'done'")
if os.environ.get("FAKE_PIP_FIXES"):
    Path(os.environ["FAKE_PIP_FIXES"]).touch()
"""


class Fakes:
    """A crashing engine build, and a pip whose rebuild may fix it."""

    def __init__(self, folder: Path) -> None:
        self.fixed = folder / "rebuilt"
        self.pip_log = folder / "pip.json"
        (folder / "crasher.py").write_text(CRASHER)
        (folder / "fakepip" / "pip").mkdir(parents=True)
        (folder / "fakepip" / "pip" / "__init__.py").write_text("")
        (folder / "fakepip" / "pip" / "__main__.py").write_text(FAKE_PIP)
        self.env = {k: v for k, v in os.environ.items() if k != "CMAKE_ARGS"}
        probe = [sys.executable, str(folder / "crasher.py"), str(self.fixed)]
        self.env.update(
            APEX_GRPC_ENGINE_PROBE=shlex.join(probe),
            PYTHONPATH=str(folder / "fakepip"),
            FAKE_PIP_LOG=str(self.pip_log),
            FAKE_PIP_FIXES=str(self.fixed),
        )

    def pip_calls(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.pip_log.read_text().splitlines()]


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def check(env: dict[str, str], *python_flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_flags, str(TOOL)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_crash_is_one_paragraph_then_a_conservative_rebuild_without_the_cache(
    fakes: Fakes,
) -> None:
    done = check(fakes.env)
    assert done.returncode == 0, done.stdout + done.stderr
    paragraph = done.stderr.strip()
    assert "\n" not in paragraph and "Traceback" not in paragraph
    assert paragraph.startswith("The local engine crashed: llama-cpp-python")
    assert "killed by SIGSEGV (signal 11)" in paragraph
    assert "its llama.cpp was compiled for: CPU : AVX2 = 1)" in paragraph
    assert "Rebuilding it from source with conservative flags" in paragraph
    [call] = fakes.pip_calls()
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[0] == "install"
    for flag in ("--no-cache-dir", "--force-reinstall", "--no-deps"):
        assert flag in argv  # the wheel cache would bring the bad build back
    assert argv[argv.index("--no-binary") + 1] == "llama-cpp-python"
    assert argv[-1].startswith("llama-cpp-python")
    cmake = str(call["cmake_args"])
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert "-DGGML_NATIVE=OFF" in cmake and "-DGGML_AVX512=OFF" in cmake
        assert "-DGGML_AMX_INT8=OFF" in cmake
    assert f"CMAKE_ARGS={shlex.quote(cmake)} " in paragraph  # the command by hand
    assert "compiling llama-cpp-python from source" in done.stdout
    assert done.stdout.strip().endswith("engine check: the rebuilt local engine answers")


AMX_BUILD = "CPU : AVX512 = 1 | AMX_INT8 = 1 |"  # llama.cpp's defaults on an AMX Xeon


def test_a_crashed_build_with_amx_is_rebuilt_for_this_cpu_without_amx(fakes: Fakes) -> None:
    # pip's wheel cache may hand back a build made with llama.cpp's defaults before: the
    # fastest safe build comes first.
    fakes.env["FAKE_FEATURES"] = AMX_BUILD
    done = check(fakes.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "its llama.cpp was compiled for: CPU : AVX512 = 1 | AMX_INT8 = 1)" in done.stderr
    [call] = fakes.pip_calls()
    sys.path.insert(0, str(ROOT / "tools"))
    from llama_build import this_machine_args

    best = this_machine_args()
    if best is not None:
        assert "Rebuilding it from source for this CPU without AMX" in done.stderr
        assert call["cmake_args"] == best
        assert "-DGGML_AMX_INT8=OFF" in best
    else:  # llama.cpp's defaults elsewhere: only the conservative build is left
        assert call["cmake_args"] == "-DGGML_NATIVE=OFF"


def test_when_the_rebuilds_crash_too_set_up_fails_with_the_paragraph(fakes: Fakes) -> None:
    del fakes.env["FAKE_PIP_FIXES"]
    fakes.env["FAKE_FEATURES"] = AMX_BUILD
    done = check(fakes.env)
    assert done.returncode == 1
    paragraphs = done.stderr.strip().split("\n")
    calls = fakes.pip_calls()
    assert 1 <= len(calls) <= 2  # for this CPU without AMX (on Linux x86_64), conservative
    assert len(paragraphs) == len(calls) + 1  # one per crash
    assert "Rebuilding it from source with conservative flags" in paragraphs[-2]
    assert f"CMAKE_ARGS={shlex.quote(str(calls[-1]['cmake_args']))})" in paragraphs[-2]
    assert "killed by SIGSEGV (signal 11)" in paragraphs[-1]
    assert "The conservative rebuild crashes too" in paragraphs[-1]
    assert "--engine echo" in paragraphs[-1]
    assert "Traceback" not in done.stdout + done.stderr


def test_the_users_cmake_args_are_not_overridden(fakes: Fakes) -> None:
    fakes.env["CMAKE_ARGS"] = "-DGGML_NATIVE=ON"
    done = check(fakes.env)
    assert done.returncode == 1
    assert not fakes.pip_log.exists()  # nothing rebuilt behind the user's back
    paragraph = done.stderr.strip()
    assert "\n" not in paragraph
    assert "killed by SIGSEGV (signal 11)" in paragraph
    assert "You set CMAKE_ARGS=-DGGML_NATIVE=ON, so nothing is rebuilt" in paragraph
    assert "-m pip install --no-cache-dir --force-reinstall" in paragraph


def test_an_error_that_is_no_crash_fails_without_a_rebuild(fakes: Fakes) -> None:
    fakes.env["APEX_GRPC_ENGINE_PROBE"] = shlex.join(
        [sys.executable, "-c", "import sys; print('no model here', file=sys.stderr); sys.exit(3)"]
    )
    done = check(fakes.env)
    assert done.returncode == 1
    assert not fakes.pip_log.exists()
    assert done.stderr.strip() == (
        "The local engine check failed with exit status 3: llama-cpp-python"
        f"{version_part()} could not answer a few tokens. Its last lines: no model here"
    )


def version_part() -> str:
    try:
        from importlib.metadata import version

        return " " + version("llama-cpp-python")
    except Exception:
        return ""


def test_without_llama_cpp_python_the_check_is_skipped(fakes: Fakes) -> None:
    del fakes.env["APEX_GRPC_ENGINE_PROBE"]
    done = check(fakes.env, "-S")  # -S: no site-packages, so no llama_cpp (the oldest venv)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "engine check skipped: llama-cpp-python or its model is not installed\n"


def run_make_venv(fakes: Fakes, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The Makefile's venv recipe, on a venv whose python skips the real pip install."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        '[ "$1" = tools/pip_install.py ] && exit 0\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "venv", f"VENV={venv}"],
        env=fakes.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, venv / ".installed"


def test_make_venv_writes_no_stamp_on_a_venv_whose_engine_crashes(
    fakes: Fakes, tmp_path: Path
) -> None:
    del fakes.env["FAKE_PIP_FIXES"]
    done, stamp = run_make_venv(fakes, tmp_path)
    assert done.returncode != 0
    assert "killed by SIGSEGV (signal 11)" in done.stderr
    assert not stamp.exists()


def test_make_venv_stamps_the_venv_once_the_rebuild_answers(fakes: Fakes, tmp_path: Path) -> None:
    done, stamp = run_make_venv(fakes, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert fakes.pip_log.exists()
    assert stamp.exists()


@pytest.mark.llm
def test_the_real_engine_answers() -> None:
    env = {k: v for k, v in os.environ.items() if k != "APEX_GRPC_ENGINE_PROBE"}
    done = check(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "engine check: the local engine answers\n"


def test_the_signal_is_named() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from engine_check import signal_name

    assert signal_name(-signal.SIGILL) == "SIGILL (signal 4)"
    assert signal_name(-99) == "an unknown signal (signal 99)"
