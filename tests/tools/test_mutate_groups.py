"""tools/mutate.py (`make mutate`): every file its groups name exists, and a missing one is refused.

mutmut skips a file it wrote no mutants for, so a group pointing at a moved
module would mutate nothing and still score 100%: this catches the move in
`make test`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mutate() -> ModuleType:
    """tools/mutate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_file_a_mutation_group_names_exists(mutate: ModuleType) -> None:
    named = [path for files in mutate.GROUPS.values() for path, _ in files]
    assert named
    assert [path for path in named if not (ROOT / path).is_file()] == []
    assert mutate.missing_paths(list(mutate.GROUPS)) == []


def test_the_driver_refuses_a_group_naming_a_moved_file(
    mutate: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = "src/apex_grpc_server/_store/_chats.py"
    groups = {"server-store": [*mutate.GROUPS["server-store"], (moved, mutate.ALL)]}
    monkeypatch.setattr(mutate, "GROUPS", groups)
    monkeypatch.setattr(sys, "argv", ["mutate.py", "server-store"])
    monkeypatch.setattr(mutate, "run_mutmut", lambda *_: pytest.fail("mutmut ran"))
    with pytest.raises(SystemExit) as refused:
        mutate.main()
    assert f"{moved} (group server-store)" in str(refused.value)
