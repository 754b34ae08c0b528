"""Generate (or check) the Python modules for protos/ into generated/.

    python tools/codegen.py --protoc-path DIR            # regenerate generated/
    python tools/codegen.py --protoc-path DIR --check    # fail on any drift

DIR holds grpcio-tools (installed there with --no-deps, see
tools/codegen-requirements.txt); the mypy-protobuf plugins come from the
running interpreter's environment.

The generated package is `apex_grpc_proto` (not a top-level `apex`, which
would collide with NVIDIA's apex). protoc's `-I<virtual>=<disk>` mapping
places protos/apex/v1/apex.proto at apex_grpc_proto/apex/v1/apex.proto, so
the generated imports are right as emitted: nothing is rewritten afterwards.

The contract itself ships too: apex_grpc_proto/protos/ holds a copy of every
.proto under protos/ and of the well-known types they import (taken from
grpcio-tools; the protobuf wheel has no .proto files), so `protoc -I` on that
folder alone compiles it (`apex-grpc proto --out DIR` writes it out).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED = ROOT / "generated"
PACKAGE = "apex_grpc_proto"
# Where the .proto sources ship inside the package, as an include root.
PROTO_TREE = f"{PACKAGE}/protos"

PACKAGE_DOCSTRINGS = {
    PACKAGE: "Generated protobuf and gRPC modules of apex-grpc (do not edit; see protos/).",
    f"{PACKAGE}/apex": "Generated modules for the proto package `apex`.",
    f"{PACKAGE}/apex/v1": "Generated modules for the proto package `apex.v1`.",
}


def _plugin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"codegen: {name} not found next to {sys.executable}; install mypy-protobuf")
    return str(path)


def generate(out_dir: Path, protoc_path: Path) -> None:
    """Run protoc for every .proto under protos/ and lay out the package."""
    protos = sorted(str(p) for p in PROTO_ROOT.rglob("*.proto"))
    if not protos:
        sys.exit(f"codegen: no .proto files under {PROTO_ROOT}")
    out_dir.mkdir(parents=True, exist_ok=True)
    descriptor_set = out_dir / "descriptor_set.binpb"
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PACKAGE}={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        f"--descriptor_set_out={descriptor_set}",
        "--include_imports",
        *protos,
    ]
    env = dict(os.environ, PYTHONPATH=str(protoc_path))
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"codegen: protoc failed:\n{result.stderr}")
    for package, doc in PACKAGE_DOCSTRINGS.items():
        init = out_dir / package / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text(f'"""{doc}"""\n')
    (out_dir / PACKAGE / "py.typed").write_text("")
    imported = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    descriptor_set.unlink()
    _copy_proto_tree({f.name for f in imported.file}, out_dir / PROTO_TREE, protoc_path)


def _copy_proto_tree(names: set[str], tree: Path, protoc_path: Path) -> None:
    """Copy each .proto protoc read (ours, then the imports from grpcio-tools) under `tree`."""
    well_known = protoc_path / "grpc_tools" / "_proto"
    for name in sorted(names):
        # protoc saw ours under the virtual -I prefix; they ship at their real paths.
        if name.startswith(f"{PACKAGE}/"):
            name = name.removeprefix(f"{PACKAGE}/")
            source = PROTO_ROOT / name
        else:
            source = well_known / name
        if not source.is_file():
            sys.exit(f"codegen: {name} is imported but not found at {source}")
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _tree(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def check(protoc_path: Path) -> int:
    """Regenerate into a temporary tree; report every difference from generated/."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, protoc_path)
        expected, actual = _tree(fresh), _tree(GENERATED)
        problems = [f"missing from generated/: {p}" for p in sorted(expected - actual)]
        problems += [f"not produced by codegen (stale?): {p}" for p in sorted(actual - expected)]
        problems += [
            f"differs from a fresh generation: {p}"
            for p in sorted(expected & actual)
            if not filecmp.cmp(fresh / p, GENERATED / p, shallow=False)
        ]
    if problems:
        print("generated/ is out of date; run `make generate` and commit:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"generated/ matches protos/ ({len(expected)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protoc-path", type=Path, required=True, help="dir with grpc_tools")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:
        return check(args.protoc_path)
    shutil.rmtree(GENERATED / PACKAGE, ignore_errors=True)
    generate(GENERATED, args.protoc_path)
    print(f"wrote {len(_tree(GENERATED))} files under generated/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
