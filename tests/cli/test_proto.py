"""``apex-grpc proto --out DIR``: the contract and its imports, compilable from DIR alone."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from ._helpers import CLI, ROOT, client_env, run

SHIPPED = [
    "apex/v1/apex.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/timestamp.proto",
]


def write_contract(out: Path) -> subprocess.CompletedProcess[str]:
    return run([*CLI, "proto", "--out", str(out)], client_env("", None))


def protoc_env() -> dict[str, str]:
    """An environment where ``grpc_tools`` imports: this one, or the codegen folder."""
    if importlib.util.find_spec("grpc_tools") is not None:
        return dict(os.environ)
    codegen = ROOT / ".venv" / "codegen"
    if not (codegen / "grpc_tools").is_dir():
        pytest.skip("needs grpcio-tools' protoc (`make check-generated` puts it in .venv/codegen)")
    return dict(os.environ, PYTHONPATH=str(codegen))


def test_proto_writes_the_contract_and_its_well_known_imports(tmp_path: Path) -> None:
    out = tmp_path / "new" / "contract"  # created, parents too
    result = write_contract(out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(out / name) for name in SHIPPED]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.proto")) == SHIPPED
    # The contract itself, byte for byte (comments included).
    assert (out / SHIPPED[0]).read_bytes() == (ROOT / "protos" / SHIPPED[0]).read_bytes()
    assert f"compile with: protoc -I {out} " in result.stderr


def test_the_written_tree_compiles_with_protoc_and_nothing_else(tmp_path: Path) -> None:
    env = protoc_env()
    out = tmp_path / "contract"
    assert write_contract(out).returncode == 0
    descriptors = tmp_path / "apex.binpb"
    # grpc_tools.protoc.main adds no include path of its own (python -m grpc_tools.protoc
    # would add its bundled well-known types): the imports must resolve from `out`.
    code = (
        "import sys; from grpc_tools import protoc;"
        f"sys.exit(protoc.main(['protoc', '-I{out}', '--include_imports',"
        f" '--descriptor_set_out={descriptors}', 'apex/v1/apex.proto']))"
    )
    compiled = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert compiled.returncode == 0, compiled.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes()).file
    assert sorted(f.name for f in files) == SHIPPED
    (contract,) = (f for f in files if f.name == "apex/v1/apex.proto")
    assert contract.package == "apex.v1"
    assert len(contract.service[0].method) == 16


def test_proto_out_errors_are_clear(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    blocked = write_contract(in_the_way)
    assert blocked.returncode == 1
    assert blocked.stderr.startswith(f"error: cannot write the .proto files under {in_the_way}:")
    assert in_the_way.read_text() == "not a folder"
    missing = run([*CLI, "proto"], client_env("", None))
    assert missing.returncode == 2
    assert "the following arguments are required: --out" in missing.stderr
