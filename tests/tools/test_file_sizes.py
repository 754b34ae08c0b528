"""No source file grows past 500 lines: a concern that outgrows a file gets a folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 500


def tracked_python_files() -> list[Path]:
    """The repository's Python files that git tracks (generated protobuf code aside)."""
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the file list comes from git ls-files")
    return [
        REPO / name
        for name in listed.stdout.split()
        if "_pb2" not in name and (REPO / name).is_file()
    ]


def test_no_python_file_is_over_500_lines() -> None:
    too_long = {
        str(path.relative_to(REPO)): count
        for path in tracked_python_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"files over {MAX_LINES} lines (split them by concern): {too_long}"
