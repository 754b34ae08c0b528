"""Mutation testing of the modules whose bugs cost users most (`make mutate`).

    python tools/mutate.py                 # every module group below
    python tools/mutate.py retry errors    # some of them (make mutate ARGS="retry errors")
    python tools/mutate.py --report        # the table of the last run, run nothing

mutmut (configured in pyproject.toml, [tool.mutmut]) writes every mutant of
the listed files into mutants/, finds which of the selected tests reach each
mutated function, and runs those tests once per mutant in a process forked
from a fork server that has only imported and collected them. This driver
starts from an empty mutants/ (new tests and changed code always count),
runs the chosen groups, prints one row per group and writes the rows into
tests/MUTATION.md between its markers.

Every path in GROUPS must exist: a group naming a moved file is refused
before mutmut runs (mutmut would write no mutants for it, and the group would
score 100% of almost nothing); tests/tools/test_mutate_groups.py checks it in
`make test`.

mutmut leaves decorated functions alone. The SQLite store's operations are
written once as ``@on_worker`` methods (apex_grpc_server/_store/sqlite/connection.py), the
service's RPCs are ``@unary`` / ``@server_stream``, and the PostgreSQL store's
``Database.transaction`` / ``read`` are ``@contextlib.asynccontextmanager``, so
this driver runs mutmut with two small patches (`_mutate_on_worker_methods`):
such a method is mutated like any other, and only the trampoline that picks
the active mutant keeps the decorator (the copies it dispatches to are plain).

The store groups' tests run against a real PostgreSQL too. Each mutant's tests
are a pytest session of their own, so the driver starts one PostgreSQL for the
whole run and hands its URL to them in $APEX_GRPC_TEST_POSTGRES
(`shared_postgres`; tests/conftest.py's ``local_postgres`` then uses it, each
session in databases of its own); without PostgreSQL those groups are refused.

A survivor listed under "Equivalent mutants" in tests/MUTATION.md (by the
line it changes, so renumbering does not matter) is left out of the score;
every other survivor is written with its diff to mutants/survivors.txt.
Timeouts and crashes are counted apart, never as kills.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "tests" / "MUTATION.md"
MUTANTS = ROOT / "mutants"
BEGIN, END = "<!-- mutate:scores -->", "<!-- /mutate:scores -->"
EQUIVALENT_HEADING = "## Equivalent mutants"

ALL = None
"""Every function of a file."""

GROUPS: dict[str, list[tuple[str, tuple[str, ...] | None]]] = {
    "retry": [
        ("src/apex_grpc/_retry.py", ALL),
        ("src/apex_grpc/_calls/unary.py", ALL),
        ("src/apex_grpc/_settings/call.py", ("choose_timeout", "resolve", "_joined")),
    ],
    "stream-state": [
        ("src/apex_grpc/_calls/stream.py", ALL),
        ("src/apex_grpc/_streaming/accumulator.py", ALL),
    ],
    "watchdog": [("src/apex_grpc/_streaming/watchdog.py", ALL)],
    "pool": [("src/apex_grpc/_transport/pool.py", ALL)],
    "errors": [("src/apex_grpc/_errors.py", ALL)],
    "validation": [
        ("src/apex_grpc/_requests/validate.py", ALL),
        ("src/apex_grpc/_requests/chat.py", ALL),
        ("src/apex_grpc/_settings/checks.py", ALL),
    ],
    "server-auth": [("src/apex_grpc_server/_rpc/api_keys.py", ALL)],
    "server-store": [
        ("src/apex_grpc_server/_store/__init__.py", ALL),
        ("src/apex_grpc_server/_store/rows.py", ALL),
        ("src/apex_grpc_server/_store/idempotency_keys.py", ALL),
        ("src/apex_grpc_server/_store/sql.py", ALL),
        ("src/apex_grpc_server/_store/sqlite/chats.py", ALL),
        ("src/apex_grpc_server/_store/sqlite/jobs.py", ALL),
        ("src/apex_grpc_server/_store/sqlite/idempotency_keys.py", ALL),
    ],
    "server-postgres": [
        ("src/apex_grpc_server/_store/postgres/store.py", ALL),
        ("src/apex_grpc_server/_store/postgres/pool.py", ALL),
        ("src/apex_grpc_server/_store/postgres/chats.py", ALL),
        ("src/apex_grpc_server/_store/postgres/jobs.py", ALL),
        ("src/apex_grpc_server/_store/postgres/idempotency_keys.py", ALL),
        ("src/apex_grpc_server/_store/postgres/schema.py", ALL),
    ],
    "server-service": [
        ("src/apex_grpc_server/_rpc/servicer.py", ALL),
        ("src/apex_grpc_server/_rpc/call_scope.py", ALL),
        ("src/apex_grpc_server/_rpc/routes.py", ALL),
        ("src/apex_grpc_server/_wire/validation.py", ALL),
        ("src/apex_grpc_server/_wire/convert.py", ALL),
    ],
}

NEEDS_POSTGRES = frozenset({"server-store", "server-postgres"})
"""The groups whose selected tests run against a real PostgreSQL (see `shared_postgres`)."""

# mutmut's exit-code vocabulary (mutmut.stats.status_by_exit_code), folded into our columns.
KILLED, SURVIVED, UNTESTED, BROKE = "killed", "survived", "no test", "timeout/crash"
COLUMN_OF_STATUS = {
    "killed": KILLED,
    "survived": SURVIVED,
    "no tests": UNTESTED,
}


def module_of(path: str) -> str:
    """The dotted module mutmut names a file's mutants after."""
    dotted = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def function_of(key: str) -> str:
    """`Class.method` or `function` of a mutant key such as ``m.xǁPoolǁacquire__mutmut_3``."""
    mangled = key.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("x_"):
        return mangled[2:]
    return mangled.lstrip("xǁ").replace("ǁ", ".")


def wanted(function: str, functions: tuple[str, ...] | None) -> bool:
    return functions is ALL or function.rpartition(".")[2] in functions


@dataclass
class Row:
    """One group's outcome."""

    group: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[tuple[str, str]] = field(default_factory=list)
    """(mutant key, diff) of the survivors not judged equivalent, the untested ones included."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float:
        """Killed mutants over all mutants that are not equivalent."""
        judged = self.total - self.counts["equivalent"]
        return self.counts[KILLED] / judged if judged else 1.0

    def cells(self) -> list[str]:
        c = self.counts
        return [
            self.group,
            str(self.total),
            str(c[KILLED]),
            str(c[SURVIVED]),
            str(c[UNTESTED]),
            str(c[BROKE]),
            str(c["equivalent"]),
            f"{self.score:.1%}",
        ]


HEADER = [
    "module",
    "mutants",
    "killed",
    "survived",
    "no test",
    "timeout/crash",
    "equivalent",
    "score",
]


def mutant_globs(groups: list[str]) -> list[str]:
    """mutmut name patterns for the mutants of `groups`."""
    globs = []
    for group in groups:
        for path, functions in GROUPS[group]:
            module = module_of(path)
            if functions is ALL:
                # `m.*` would also match modules below a package (`_store._chats`).
                globs += [f"{module}.x_*", f"{module}.xǁ*"]
            else:
                globs += [f"{module}.x_{name}__mutmut_*" for name in functions]
    return globs


def signature(key: str, diff: str) -> str:
    """How tests/MUTATION.md names a mutant: its function, the line(s) it removes and adds."""
    lines = diff.splitlines()[2:]  # past the ---/+++ header
    removed = " / ".join(x[1:].strip() for x in lines if x.startswith("-"))
    added = " / ".join(x[1:].strip() for x in lines if x.startswith("+"))
    return f"{function_of(key)}: {removed} => {added}"


def equivalents() -> set[str]:
    """The signatures listed under the equivalent-mutants heading of tests/MUTATION.md."""
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
    section = text.partition(EQUIVALENT_HEADING)[2]
    return {m.group(1) for m in re.finditer(r"^\s*- `(.+)`", section, re.MULTILINE)}


def collect(groups: list[str]) -> list[Row]:
    """Read mutmut's results for `groups` from mutants/."""
    os.chdir(ROOT)  # mutmut's helpers read mutants/ relative to here
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    known_equivalent = equivalents()
    rows = []
    for group in groups:
        row = Row(group)
        for path, functions in GROUPS[group]:
            meta = MUTANTS / f"{path}.meta"
            if not meta.exists():
                continue
            results = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
            for key, exit_code in sorted(results.items()):
                if not wanted(function_of(key), functions):
                    continue
                column = COLUMN_OF_STATUS.get(status_by_exit_code[exit_code], BROKE)
                if column in (SURVIVED, UNTESTED):
                    diff = get_diff_for_mutant(key, path=path)
                    if signature(key, diff) in known_equivalent:
                        column = "equivalent"
                    else:
                        row.survivors.append((key, diff))
                row.counts[column] += 1
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def update_report(rows: list[Row], seconds: float) -> None:
    """Replace the rows of these groups in tests/MUTATION.md's score table, keep the others."""
    text = REPORT.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    old, _, tail = rest.partition(END)
    kept = {
        line.split("|")[1].strip(): line
        for line in old.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in GROUPS
    }
    for row in rows:
        kept[row.group] = "| " + " | ".join(row.cells()) + " |"
    names = ", ".join(row.group for row in rows)
    body = [
        "",
        f"Last run: {date.today().isoformat()}, {names}, {seconds / 60:.1f} min"
        + ("." if len(rows) == len(GROUPS) else "; the other rows are from earlier runs."),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *(kept[group] for group in GROUPS if group in kept),
        "",
    ]
    REPORT.write_text(head + BEGIN + "\n".join(body) + END + tail, encoding="utf-8")


def write_survivors(rows: list[Row]) -> Path:
    out = MUTANTS / "survivors.txt"
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            for key, diff in row.survivors:
                f.write(f"# {row.group}  {key}\n# {signature(key, diff)}\n{diff}\n\n")
    return out


# @unary / @server_stream: the servicer's RPC methods (apex_grpc_server/_rpc/servicer.py);
# @contextlib.asynccontextmanager: the PostgreSQL store's transaction() and read().
DECORATORS_TO_MUTATE_THROUGH = frozenset(
    {"on_worker", "unary", "server_stream", "contextlib.asynccontextmanager"}
)


def _mutate_on_worker_methods() -> None:
    """Patch mutmut 3.8 to mutate methods whose one decorator is in DECORATORS_TO_MUTATE_THROUGH."""
    import libcst as cst
    from mutmut.mutation import file_mutation

    def dotted(expression: cst.BaseExpression) -> str | None:
        if isinstance(expression, cst.Name):
            return expression.value
        if isinstance(expression, cst.Attribute):
            owner = dotted(expression.value)
            return None if owner is None else f"{owner}.{expression.attr.value}"
        return None

    def decorated_through(node: object) -> bool:
        return (
            isinstance(node, cst.FunctionDef)
            and len(node.decorators) == 1
            and dotted(node.decorators[0].decorator) in DECORATORS_TO_MUTATE_THROUGH
        )

    visitor = file_mutation.MutationVisitor
    skip = visitor._skip_node_and_children
    arrange = file_mutation.function_trampoline_arrangement

    def skip_unless_on_worker(self: object, node: cst.CSTNode) -> bool:
        if decorated_through(node):
            node = node.with_changes(decorators=[])  # type: ignore[attr-defined]
        return skip(self, node)  # type: ignore[no-any-return]

    def arrange_with_plain_copies(function: cst.FunctionDef, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if not decorated_through(function):
            return arrange(function, *args, **kwargs)
        declarations, methods, assignments, names = arrange(
            function.with_changes(decorators=[]), *args, **kwargs
        )
        trampoline, *copies = methods
        trampoline = trampoline.with_changes(
            decorators=[*function.decorators, *trampoline.decorators]
        )
        return declarations, [trampoline, *copies], assignments, names

    visitor._skip_node_and_children = skip_unless_on_worker
    file_mutation.function_trampoline_arrangement = arrange_with_plain_copies


def missing_paths(groups: list[str]) -> list[str]:
    """The paths that `groups` list and that do not exist (a module moved or was renamed)."""
    return [
        f"{path} (group {group})"
        for group in groups
        for path, _ in GROUPS[group]
        if not (ROOT / path).is_file()
    ]


@contextlib.contextmanager
def shared_postgres(groups: list[str]) -> Iterator[dict[str, str]]:
    """The environment of mutmut's tests: one PostgreSQL for the whole run, if `groups` need it.

    Each mutant's tests are a pytest session of their own, whose ``local_postgres``
    fixture would start a cluster per mutant; with ``$APEX_GRPC_TEST_POSTGRES``
    set, they share this one (tests/conftest.py, ``SharedPostgres``). Its tests
    must run, not skip: without PostgreSQL the run is refused.
    """
    if not NEEDS_POSTGRES.intersection(groups):
        yield dict(os.environ)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from tools.local_postgres import INSTALL_HINT, LocalPostgres, find_bin_dir

    if find_bin_dir() is None:
        sys.exit(f"{', '.join(sorted(NEEDS_POSTGRES))} need PostgreSQL: {INSTALL_HINT}")
    with LocalPostgres(durable=False) as server:
        yield {**os.environ, "APEX_GRPC_TEST_POSTGRES": server.url}


def run_mutmut(groups: list[str], jobs: int) -> None:
    shutil.rmtree(MUTANTS, ignore_errors=True)
    MUTANTS.mkdir()
    log = MUTANTS / "mutmut-run.log"
    command = [sys.executable, __file__, "--as-mutmut", "run", "--max-children", str(jobs)]
    command += mutant_globs(groups)
    print(f"mutmut: {len(groups)} group(s), {jobs} at a time; progress in {log.relative_to(ROOT)}")
    with log.open("w", encoding="utf-8") as out, shared_postgres(groups) as env:
        done = subprocess.run(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        sys.exit(f"mutmut failed (exit {done.returncode}); see {log}")


def main() -> None:
    if sys.argv[1:2] == ["--as-mutmut"]:  # run_mutmut's child: mutmut itself, patched
        _mutate_on_worker_methods()
        from mutmut.__main__ import cli

        cli(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("groups", nargs="*", metavar="module", help=", ".join(GROUPS))
    parser.add_argument("--report", action="store_true", help="report the last run only")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")))
    args = parser.parse_args()
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    groups = args.groups or list(GROUPS)
    missing = missing_paths(groups)
    if missing:
        sys.exit(
            "tools/mutate.py: GROUPS lists files that do not exist (moved? point GROUPS at"
            " their new paths):\n  " + "\n  ".join(missing)
        )

    started = time.monotonic()
    if not args.report:
        run_mutmut(groups, args.jobs)
    rows = collect(groups)
    seconds = time.monotonic() - started
    print(table(rows))
    survivors = write_survivors(rows)
    left = sum(len(row.survivors) for row in rows)
    print(f"{left} survivors not judged equivalent: {survivors.relative_to(ROOT)}")
    if not args.report:
        update_report(rows, seconds)
        print(f"{seconds / 60:.1f} min; scores written to {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
