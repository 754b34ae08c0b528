"""The docs tests list the snippets they did not run, and why, at the end of the session."""

from __future__ import annotations

import pytest

from ._markdown import PAGES, PageError, blocks


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not any(
        report.nodeid.startswith("tests/docs/test_snippets.py")
        for reports in terminalreporter.stats.values()
        for report in reports
        if hasattr(report, "nodeid")
    ):
        return
    lines: dict[str, None] = {}  # ordered, without repeats
    for page in PAGES:
        try:
            found = blocks(page)
        except PageError:
            continue  # the page's own test reports it
        for block in found:
            if block.skip_reason is not None:
                lines[f"{block.where}: {block.skip_reason}"] = None
            elif block.needs_model:
                lines[f"{block.where}: {block.marker} (test_page_on_local_model runs it)"] = None
    if lines:
        terminalreporter.section("documentation snippets not run by test_page")
        for line in lines:
            terminalreporter.write_line(line)
