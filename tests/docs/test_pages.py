"""The pages that describe the code say what the code does: flags, options, defaults, errors, links.

Each test reads the code's own description of itself (``--help``, the
settings' fields, the exception classes) and checks the page against it, so
a new flag, option or error class cannot go undocumented.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

import apex_grpc as mc

from ._markdown import ROOT, blocks
from ._runner import ServeProcess, apex_grpc_command

DOCS = ROOT / "docs"
_LONG_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_text(*command: str) -> str:
    """``apex-grpc COMMAND --help``."""
    result = subprocess.run(
        [sys.executable, "-m", "apex_grpc.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return result.stdout


def flags(text: str) -> set[str]:
    """The long flags a help text lists (--help aside)."""
    return set(_LONG_FLAG.findall(text)) - {"--help"}


@pytest.mark.parametrize(
    ("command", "page"),
    [
        ((), "cli.md"),
        (("chat",), "cli.md"),
        (("search",), "cli.md"),
        (("research",), "cli.md"),
        (("proto",), "cli.md"),
        (("serve",), "server.md"),
        (("index",), "server.md"),
    ],
    ids=lambda value: " ".join(value) or "apex-grpc" if isinstance(value, tuple) else value,
)
def test_every_flag_is_documented(command: tuple[str, ...], page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    listed = flags(help_text(*command))
    assert listed, "the help lists no flags: the pattern is wrong"
    mentioned = set(_LONG_FLAG.findall(text))
    missing = sorted(listed - mentioned)
    assert not missing, f"docs/{page} does not mention {missing} of apex-grpc {' '.join(command)}"


def table_rows(page: Path, heading: str) -> dict[str, str]:
    """The rows of the first table under `heading`, by the first cell's first `name`."""
    text = page.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            rows.setdefault(line.split("`")[1], line)
        elif rows and not line.startswith("|"):
            break
    return rows


def documented_default(name: str, value: object) -> list[str]:
    """What the configuration table must say for an option whose default is `value`."""
    if isinstance(value, mc.RetryPolicy):
        return [
            f"{value.max_retries} retries",
            f"{value.initial_backoff:g} s",
            f"{value.max_backoff:g} s",
            f"{value.jitter * 100:g} %",
        ]
    if isinstance(value, mc.KeepAliveConfig):
        return [f"every {value.interval:g} s", f"{value.timeout:g} s to answer"]
    if isinstance(value, bool):
        return [f"`{value}`"]
    if name == "max_message_bytes" and isinstance(value, int):
        return [f"{value // 2**20} MiB"]
    if isinstance(value, int | float):
        return [f"{value:g}"]
    if isinstance(value, str) and name == "base_url":
        return [f"`{value}`"]
    if isinstance(value, str):
        return [f'`"{value}"`']
    return []  # None, (), NOT_GIVEN: the row says it in words


def test_every_client_option_and_its_default_is_documented() -> None:
    rows = table_rows(DOCS / "configuration.md", "## Every option")
    with mock.patch.dict(os.environ, {}, clear=True):
        client = mc.ApexClient(api_key="documentation-check")
    settings = client.settings
    for spec in dataclasses.fields(mc.ClientSettings):
        if not spec.init:
            continue
        assert spec.name in rows, f"docs/configuration.md has no row for the option {spec.name}"
        row = rows[spec.name]
        for text in documented_default(spec.name, getattr(settings, spec.name)):
            assert text in row, f"the {spec.name} row should say {text!r}: {row}"
    assert f"{client.timeout:g} s" in rows["timeout"]
    assert f"({client.max_retries})" in rows["max_retries"]
    client.close()


def test_every_call_option_is_documented() -> None:
    rows = table_rows(DOCS / "configuration.md", "## Options of one call")
    text = " ".join(rows.values())
    for name in mc.CallOptions.__optional_keys__:
        assert f"`{name}`" in text, f"the call options table has no {name}"
    streaming = (DOCS / "streaming.md").read_text(encoding="utf-8")
    for name in mc.StreamOptions.__optional_keys__:
        assert f"`{name}=`" in streaming, f"docs/streaming.md does not explain {name}"


_TREE_LINE = re.compile(r"^(?P<prefix>[│├└─ ]*)(?P<name>[A-Z]\w+)")


def test_the_error_tree_is_the_class_hierarchy() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    tree = text.split("```text\n", 1)[1].split("```", 1)[0]
    parents: list[type[BaseException]] = []
    shown: set[type[BaseException]] = set()
    for line in tree.splitlines():
        match = _TREE_LINE.match(line)
        assert match is not None, f"not a line of the tree: {line!r}"
        depth = len(match["prefix"]) // 4
        cls = getattr(mc, match["name"])
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__bases__, f"{cls.__name__} is not a {parents[-1].__name__}"
        parents.append(cls)
        shown.add(cls)
    exported = {
        value
        for name in mc.__all__
        if isinstance(value := getattr(mc, name), type) and issubclass(value, mc.ApexError)
    }
    assert exported - shown == set(), f"missing from the tree: {exported - shown}"


_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def test_readme_links_point_at_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [m["target"] for m in _LINK.finditer(readme) if "://" not in m["target"]]
    assert targets, "README.md links nowhere: the pattern is wrong"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_docstring_name_lines_become_a_list_in_the_reference() -> None:
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    spec = importlib.util.spec_from_file_location("docs_griffe", ROOT / "tools" / "docs_griffe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docstring = (
        "Poll the job.\n\n"
        "timeout: seconds in all\n    (then DeepResearchTimeoutError).\n"
        "model, task: names passed through.\n"
        "The call options apply to each poll.\n"
        "Keywords: prose, not a name."
    )
    assert module.as_markdown_list(docstring) == (
        "Poll the job.\n\n"
        "- `timeout`: seconds in all\n  (then DeepResearchTimeoutError).\n"
        "- `model`, `task`: names passed through.\n\n"
        "The call options apply to each poll.\n"
        "Keywords: prose, not a name."
    )


def test_serve_prints_the_exports_the_docs_give(tmp_path: Path) -> None:
    """The quickstart's export lines are exactly what ``apex-grpc serve`` tells a user to run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}
    env["HOME"] = str(tmp_path)
    command = apex_grpc_command("serve", "--engine", "echo", "--api-key", "api-key")
    served = ServeProcess.start(command, tmp_path / "serve", env)
    try:
        deadline = time.monotonic() + 10
        while "export APEX_API_KEY" not in served.stdout() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        served.stop()
    printed = served.stdout().replace(f":{served.port}", ":50051").splitlines()
    exports = next(b for b in blocks(ROOT / "README.md") if b.code.startswith("export "))
    assert exports.code.splitlines() == [line for line in printed if line.startswith("export ")]
    server_page = (DOCS / "server.md").read_text(encoding="utf-8")
    assert "```text\n" + "\n".join(printed) + "\n```" in server_page
