"""examples/go: a grpc-go client generated with buf (protoc-gen-go + protoc-gen-go-grpc).

Built offline by examples/go/build-offline.sh from Debian's packaged Go
sources; skipped, naming the packages, where Go or those packages are missing
(CI has no Go).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from .conftest import BUF, ROOT, SNIPPETS, Command, check_snippet, run_step

EXAMPLE = ROOT / "examples" / "go"
GOCODE = Path("/usr/share/gocode/src")
APT_GET = (
    "apt-get install -y golang-go golang-google-grpc-dev golang-google-protobuf-dev"
    " golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc"
)

pytestmark = pytest.mark.timeout(300)  # a cold build compiles grpc-go: 10-30 s on 2 busy cores


def go_missing() -> str | None:
    """Why the example cannot be built here, or None."""
    missing = [
        tool for tool in ("go", "protoc-gen-go", "protoc-gen-go-grpc") if not shutil.which(tool)
    ]
    missing += [
        str(GOCODE / package)
        for package in ("google.golang.org/grpc", "google.golang.org/protobuf")
        if not (GOCODE / package).is_dir()
    ]
    if missing:
        return f"needs Go and Debian's Go packages (missing: {', '.join(missing)}): {APT_GET}"
    return None


@pytest.fixture(scope="module")
def go_example(tmp_path_factory: pytest.TempPathFactory) -> Command:
    reason = go_missing()
    if reason is not None:
        pytest.skip(reason)
    binary = tmp_path_factory.mktemp("go") / "apex-example"
    run_step(
        ["bash", str(EXAMPLE / "build-offline.sh"), str(binary)], EXAMPLE, timeout=240, BUF=str(BUF)
    )

    def command(snippet: str) -> Sequence[str]:
        return [str(binary), snippet]

    return command


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_go_snippet(go_example: Command, snippet: str, server_env: dict[str, str]) -> None:
    check_snippet(go_example, snippet, server_env, EXAMPLE)
