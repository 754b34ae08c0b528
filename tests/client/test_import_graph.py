"""Imports inside `apex_grpc` run one way: no cycle, counting every import statement.

Function-level imports and imports under ``if TYPE_CHECKING:`` count too
(tests/_import_graph.py builds the graph; the server's twin is
tests/server/test_import_graph.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _import_graph import cycles, import_graph

import apex_grpc

pytestmark = pytest.mark.oldest

PACKAGE = Path(apex_grpc.__file__).parent


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph("apex_grpc", PACKAGE)
    assert len(graph) > 40 and graph["apex_grpc._client"], "the graph was not read"
    assert cycles(graph) == []


def test_a_cycle_is_found_wherever_it_hides() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


if __name__ == "__main__":  # print the graph (for ARCHITECTURE.md and reviews)
    for module, imported in sorted(import_graph("apex_grpc", PACKAGE).items()):
        print(module, "->", ", ".join(sorted(imported)) or "(nothing)")
