"""Imports inside `apex_grpc_server` run one way, and the client uses only its public entry.

Every import statement counts (function-level and ``TYPE_CHECKING`` ones too,
tests/_import_graph.py). Modules form no cycle, and the role packages form
layers: a module imports from its own package or from a layer below it, never
above (ARCHITECTURE.md draws the same layers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from _import_graph import cycles, import_graph

import apex_grpc
import apex_grpc_server

pytestmark = pytest.mark.oldest

PACKAGE = Path(apex_grpc_server.__file__).parent

LAYERS = [
    {"__main__", "cli"},
    {"_runtime"},
    {"_http"},
    {"_rpc"},
    {"_research"},
    {"_chat"},
    {"_search"},
    {"_wire"},
    {"_metrics"},
    {"_engines"},
    {"_config"},
    {"_store"},
    {"_status", "_logging"},
]
"""The server's role packages (and top-level modules), top to bottom."""


def role(module: str) -> str:
    """``apex_grpc_server._chat.queue`` -> ``_chat``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(name: str) -> int:
    for depth, members in enumerate(LAYERS):
        if name in members:
            return depth
    raise AssertionError(f"{name!r} is in no layer: add it to LAYERS (and ARCHITECTURE.md)")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a higher layer than the importer's, as ``a -> b``."""
    found = []
    for module, imported in graph.items():
        if role(module) == "":  # the package's lazy public facade sits above every layer
            continue
        for target in imported:
            if role(target) == "":
                found.append(f"{module} -> {target} (the public facade)")
            elif layer_of(role(target)) < layer_of(role(module)):
                found.append(f"{module} -> {target}")
    return sorted(found)


def test_the_server_import_graph_has_no_cycle() -> None:
    graph = import_graph("apex_grpc_server", PACKAGE)
    assert len(graph) > 50 and graph["apex_grpc_server._rpc.servicer"], "the graph was not read"
    assert cycles(graph) == []


def test_the_role_packages_import_downward_only() -> None:
    assert upward_imports(import_graph("apex_grpc_server", PACKAGE)) == []


def test_an_upward_import_is_named() -> None:
    graph = {
        "apex_grpc_server._store.sql": {"apex_grpc_server._chat.queue"},
        "apex_grpc_server._chat.queue": {"apex_grpc_server._status"},
        "apex_grpc_server._wire.convert": {"apex_grpc_server"},
    }
    assert upward_imports(graph) == [
        "apex_grpc_server._store.sql -> apex_grpc_server._chat.queue",
        "apex_grpc_server._wire.convert -> apex_grpc_server (the public facade)",
    ]


def test_the_client_imports_no_private_server_module() -> None:
    client = Path(apex_grpc.__file__).parent
    private = []
    for path in client.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            private += [
                f"{path.relative_to(client)}: {name}"
                for name in names
                if name.startswith("apex_grpc_server.") and name.split(".")[1].startswith("_")
            ]
    assert private == []
