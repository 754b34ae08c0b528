"""`apex_grpc.__all__` is sorted and complete: every public name exported, nothing private.

(httpx keeps the same test: tests/test_exported_members.py.)
"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc import _errors, _types

pytestmark = pytest.mark.oldest

INIT = Path(mc.__file__)


def written_names() -> list[str]:
    """The names spelled in `__all__` in apex_grpc/__init__.py, in their order."""
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__":
            assert isinstance(node.value, ast.List)
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    raise AssertionError("apex_grpc/__init__.py has no __all__")


def test_all_is_sorted_and_names_only_what_exists() -> None:
    names = written_names()
    assert names == sorted(names)
    assert mc.__all__ == sorted(mc.__all__), "sorted as written, and at run time"
    assert len(mc.__all__) == len(set(mc.__all__)), "a name is exported twice"
    for name in mc.__all__:
        assert getattr(mc, name) is not None, name
        assert not name.startswith("_") or name == "__version__", f"{name} is private"


def test_every_public_name_of_the_package_is_exported() -> None:
    exported = set(mc.__all__)
    public = {
        name
        for name, value in vars(mc).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith(("apex_grpc", "apex_grpc_proto"))
    }
    assert public <= exported, f"imported but not exported: {sorted(public - exported)}"
    errors = {
        name
        for name, value in vars(_errors).items()
        if inspect.isclass(value) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert errors <= exported, f"error classes not exported: {sorted(errors - exported)}"
    assert set(_types.__all__) <= exported


def _apex_classes(hint: Any) -> set[type]:
    """The apex_grpc classes a type hint mentions (unions, generics, ...)."""
    found: set[type] = set()
    if inspect.isclass(hint) and hint.__module__.startswith("apex_grpc."):
        found.add(hint)
    for argument in typing.get_args(hint):
        found |= _apex_classes(argument)
    return found


def test_every_type_a_public_method_takes_or_returns_is_exported() -> None:
    client = mc.ApexClient(api_key="k", base_url="127.0.0.1:1")
    owners: list[Any] = [
        mc.ApexClient,
        mc.AsyncApexClient,
        client.chat.completions,
        client.web_search,
        client.deep_research,
        client.chats,
    ]
    exported = {getattr(mc, name) for name in mc.__all__}
    # What a user names in code; stream/resource classes are reached from the client.
    reached = {type(owner) for owner in owners[2:]}
    for owner in owners:
        for name, member in inspect.getmembers(owner, callable):
            if name.startswith("_") and name != "__init__":
                continue
            try:
                hints = typing.get_type_hints(member)
            except (TypeError, NameError):
                continue
            for hint in hints.values():
                for cls in _apex_classes(hint) - reached:
                    assert cls in exported, f"{owner}.{name} uses {cls.__name__}, not exported"
