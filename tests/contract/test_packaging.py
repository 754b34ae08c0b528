"""The package as users get it: version ranges, wheel contents, a fresh install."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lower_bounds(requirements: list[str]) -> dict[str, str]:
    bounds = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[.*\])?.*>=\s*([0-9][^,;\s]*)", requirement)
        if match:
            bounds[match.group(1).lower()] = match.group(2)
    return bounds


def test_runtime_dependencies_are_grpcio_and_protobuf_only() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in project["dependencies"]}
    assert names == {"grpcio", "protobuf"}


def test_lower_bounds_are_the_oldest_tested_versions() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    declared = _lower_bounds(project["dependencies"])
    declared |= _lower_bounds(project["optional-dependencies"]["server"])
    pinned = dict(
        line.split("==")
        for line in (ROOT / "tools" / "oldest-constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name, version in pinned.items():
        assert declared.get(name) == version, f"{name}: pyproject says >={declared.get(name)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("apex_grpc-*.whl")
    return built


def test_wheel_ships_our_packages_under_our_names(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "apex_grpc/__init__.py",
        "apex_grpc/py.typed",
        "apex_grpc_proto/py.typed",
        "apex_grpc_proto/apex/v1/apex_pb2.py",
        "apex_grpc_proto/apex/v1/apex_pb2.pyi",
        "apex_grpc_proto/apex/v1/apex_pb2_grpc.py",
        "apex_grpc_proto/apex/v1/apex_pb2_grpc.pyi",
        "apex_grpc_server/__init__.py",
        "apex_grpc_server/_search/corpus/apex.md",
        # The contract and the well-known types it imports (apex-grpc proto --out).
        "apex_grpc_proto/protos/apex/v1/apex.proto",
        "apex_grpc_proto/protos/google/protobuf/empty.proto",
        "apex_grpc_proto/protos/google/protobuf/struct.proto",
        "apex_grpc_proto/protos/google/protobuf/timestamp.proto",
    ]:
        assert required in names
    shipped = zipfile.ZipFile(wheel).read("apex_grpc_proto/protos/apex/v1/apex.proto")
    assert shipped == (ROOT / "protos" / "apex" / "v1" / "apex.proto").read_bytes()
    top_level = {name.split("/")[0] for name in names if not name.startswith("apex_grpc-")}
    # No top-level `apex` (it would collide with NVIDIA's apex).
    assert top_level == {"apex_grpc", "apex_grpc_server", "apex_grpc_proto"}
    metadata = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "apex-grpc = apex_grpc.cli:main" in entry_points
    # The testing kit's fixtures, for users' pytest runs.
    assert "[pytest11]\napex_grpc = apex_grpc.testing._pytest_plugin" in entry_points
    assert "apex_grpc/testing/_pytest_plugin.py" in names
    # The OpenTelemetry instrumentor, for `opentelemetry-instrument` (extra otel).
    assert (
        "[opentelemetry_instrumentor]\napex_grpc = "
        "apex_grpc.instrumentation.otel:ApexGrpcInstrumentor" in entry_points
    )
    assert "apex_grpc/instrumentation/otel.py" in names


@pytest.fixture(scope="module")
def fresh_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel and no extras (grpcio and protobuf only); its folder."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return env_dir


@pytest.mark.timeout(300)
def test_fresh_install_imports_and_type_checks(fresh_install: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="the dev extra brings mypy")
    env_dir = fresh_install
    python = env_dir / "bin" / "python"
    probe = (
        "import apex_grpc, apex_grpc_proto.apex.v1.apex_pb2 as pb;"
        f"assert apex_grpc.__file__.startswith({str(env_dir)!r});"
        "print(pb.ChatCompletionRequest(model='m').model)"
    )
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True, env=clean_env
    )
    assert out.stdout.strip() == "m"

    usage = tmp_path / "usage.py"
    usage.write_text(
        "from apex_grpc_proto.apex.v1 import apex_pb2\n"
        "r = apex_pb2.WebRetrievalRequest(search_query='q', n_results=3)\n"
        "n: int = r.n_results\n"
        "bad: str = r.n_results\n"
    )
    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(python),
            str(usage),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env,
    )
    # Typed: the one wrong assignment is caught, and nothing else is reported.
    assert 'Incompatible types in assignment (expression has type "int"' in mypy.stdout
    assert "Found 1 error" in mypy.stdout, mypy.stdout


def run_installed(
    env_dir: Path, program: str, *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run `program` of the venv `env_dir` (nothing of this checkout on the path)."""
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(env_dir / "bin" / program), *args],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env,
        cwd=cwd,
    )


@pytest.mark.timeout(300)
def test_the_testing_kit_works_on_a_base_install(fresh_install: Path, tmp_path: Path) -> None:
    """apex_grpc.testing needs grpcio and protobuf only: no pytest, no server extra."""
    code = (
        "import importlib.util, sys\n"
        "from apex_grpc.testing import FakeApex\n"
        "assert importlib.util.find_spec('pytest') is None\n"
        "with FakeApex() as fake, fake.client() as client:\n"
        "    fake.on('ChatCompletion').reply('fake hello')\n"
        "    reply = client.chat.completions.create(messages=[{'role': 'user', 'content': 'Hi'}])\n"
        "print(reply.choices[0].message.content)\n"
        "print(sorted(m for m in sys.modules if m.startswith('apex_grpc_server')))\n"
    )
    result = run_installed(fresh_install, "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["fake hello", "[]"]


@pytest.mark.timeout(300)
def test_the_instrumentor_without_the_otel_extra_says_what_to_install(
    fresh_install: Path, tmp_path: Path
) -> None:
    result = run_installed(
        fresh_install, "python", "-c", "import apex_grpc.instrumentation.otel", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "pip install 'apex-grpc[otel]'" in result.stderr, result.stderr[-2000:]


def modules_loaded(imports: str, prefix: str) -> list[str]:
    """The modules named `prefix` or under it that ``import {imports}`` loads, in a new process."""
    code = (
        f"import sys, {imports};"
        f"print(sorted(m for m in sys.modules if m == {prefix!r} or m.startswith({prefix!r} '.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return ast.literal_eval(result.stdout.strip())


def test_the_server_package_never_imports_the_client() -> None:
    """`apex_grpc_server` shares only the generated messages with the client."""
    imports = "apex_grpc_server, apex_grpc_server._runtime.server, apex_grpc_server.cli"
    assert modules_loaded(imports, "apex_grpc") == []


def test_the_testing_kit_never_imports_the_server() -> None:
    """The fake Apex is the client's: it does not need the server extra."""
    imports = "apex_grpc.testing, apex_grpc.testing._pytest_plugin"
    assert modules_loaded(imports, "apex_grpc_server") == []


def test_python_dash_m_apex_grpc_server_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apex_grpc_server", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--engine" in result.stdout


@pytest.mark.timeout(300)
def test_base_install_writes_the_contract(fresh_install: Path, tmp_path: Path) -> None:
    """`apex-grpc proto --out` works with no extras: the .proto files come from the wheel."""
    out = tmp_path / "contract"
    result = run_installed(fresh_install, "apex-grpc", "proto", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4
    written = (out / "apex" / "v1" / "apex.proto").read_bytes()
    assert written == (ROOT / "protos" / "apex" / "v1" / "apex.proto").read_bytes()
    assert (out / "google" / "protobuf" / "struct.proto").is_file()
