"""tools/pip_install.py, the pip install of `make venv`: quiet, but for builds from source.

A real pip installs a tiny project whose build backend (written here, standard
library only) takes as long as the test says, offline, into a scratch folder.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "pip_install.py"

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "tiny_pkg"
version = "0.1"
"""

BACKEND = """\
import base64, hashlib, os, time, zipfile
from pathlib import Path

NAME, VERSION = "tiny_pkg", "0.1"
METADATA = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"
WHEEL = "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    # As llama-cpp-python's backend does: metadata at once, the compiling in build_wheel.
    dist = f"{NAME}-{VERSION}.dist-info"
    (Path(metadata_directory) / dist).mkdir()
    (Path(metadata_directory) / dist / "METADATA").write_text(METADATA)
    return dist


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    time.sleep(float(os.environ.get("TINY_BUILD_S", "0")))
    if os.environ.get("TINY_CMAKE_ARGS_FILE"):
        Path(os.environ["TINY_CMAKE_ARGS_FILE"]).write_text(os.environ.get("CMAKE_ARGS", "-"))
    if os.environ.get("TINY_BUILD_FAILS"):
        raise RuntimeError("the compiler failed")
    dist = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}/__init__.py": b"",
        f"{dist}/METADATA": METADATA.encode(),
        f"{dist}/WHEEL": WHEEL.encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(f"{dist}/RECORD", "\\n".join(record) + "\\n")
    return name
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A source tree pip must build: no wheel of it exists."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "backend.py").write_text(BACKEND)
    return folder


def install(what: str, target: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """tools/pip_install.py, offline, into `target`."""
    return subprocess.run(
        [sys.executable, str(TOOL), "--no-index", "--no-deps", "--target", str(target), what],
        env={**os.environ, "PIP_FIND_LINKS": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_build_from_source_is_announced_and_shows_it_is_alive(
    project: Path, tmp_path: Path
) -> None:
    done = install(
        str(project), tmp_path / "site", TINY_BUILD_S="2", APEX_GRPC_PIP_HEARTBEAT_S="0.2"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "compiling tiny-pkg from source: no prebuilt wheel fits ..."
    assert lines[1].startswith("  still compiling tiny-pkg: ") and lines[1].endswith(" so far")
    assert lines[-1].startswith("compiled tiny-pkg in ")
    assert all(line.startswith("  still compiling tiny-pkg") for line in lines[1:-1])
    assert (tmp_path / "site" / "tiny_pkg" / "__init__.py").exists()


def test_a_wheel_installs_quietly(project: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", "import backend; backend.build_wheel('.')"],
        cwd=project,
        check=True,
        timeout=60,
    )
    done = install(str(project / "tiny_pkg-0.1-py3-none-any.whl"), tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (tmp_path / "site" / "tiny_pkg" / "__init__.py").exists()


def test_a_failed_build_keeps_pips_exit_status_and_output(project: Path, tmp_path: Path) -> None:
    done = install(str(project), tmp_path / "site", TINY_BUILD_FAILS="1")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1].startswith("failed to compile tiny-pkg in ")
    assert "the compiler failed" in done.stderr  # pip's own account of the build
    assert "Building wheel for tiny_pkg" in done.stderr  # and the lines it had hidden


def test_pip_failing_before_any_build_keeps_its_exit_status(tmp_path: Path) -> None:
    done = install("no-such-project-anywhere", tmp_path / "site")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no-such-project-anywhere" in done.stderr


def test_the_build_gets_llama_cpps_flags_for_this_cpu_unless_the_user_set_them(
    project: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "cmake_args"
    done = install(str(project), tmp_path / "site", TINY_CMAKE_ARGS_FILE=str(seen), CMAKE_ARGS="")
    assert done.returncode == 0, done.stderr
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert seen.read_text().startswith("-DGGML_NATIVE=OFF -DGGML_SSE42=")
        assert "-DGGML_AMX_INT8=OFF" in seen.read_text()
    else:  # llama.cpp's own defaults elsewhere
        assert seen.read_text() in ("-", "")
    mine = "-DGGML_NATIVE=ON"
    done = install(
        str(project), tmp_path / "site2", TINY_CMAKE_ARGS_FILE=str(seen), CMAKE_ARGS=mine
    )
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == mine


def load_tool() -> ModuleType:
    sys.path.insert(0, str(TOOL.parent))  # it imports its sibling llama_build
    spec = importlib.util.spec_from_file_location("pip_install", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_llama_cpp_python_says_how_long_to_expect() -> None:
    tool = load_tool()
    out = io.StringIO()
    reporter = tool.BuildReporter(out, heartbeat_s=30.0)
    reporter.line("  Building wheel for llama_cpp_python (pyproject.toml): started")
    reporter.line("  Building editable for apex-grpc (pyproject.toml): started")
    reporter.line(
        "  Building wheel for llama_cpp_python (pyproject.toml): finished with status 'done'"
    )
    assert out.getvalue().splitlines() == [
        "compiling llama-cpp-python from source: no prebuilt wheel fits "
        "(about 5-10 minutes on 2 cores) ...",
        "compiled llama-cpp-python in 0s",
    ]
    named = io.StringIO()
    reporter = tool.BuildReporter(named, heartbeat_s=30.0, cmake_args="-DGGML_NATIVE=OFF")
    reporter.line("  Building wheel for llama_cpp_python (pyproject.toml): started")
    reporter.line("  Building wheel for tiny-pkg (pyproject.toml): started")
    assert named.getvalue().splitlines()[1] == "  with CMAKE_ARGS=-DGGML_NATIVE=OFF"
    assert len(named.getvalue().splitlines()) == 3  # named for llama-cpp-python only
