"""The pytest examples of docs/testing.md, run as a user would: copied into a fresh folder with
no pytest configuration, and run by pytest with the plugin from the installed package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
SECTION = ("## With pytest", "The fixtures are a thin layer")
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def example_test_file() -> str:
    """The Python blocks of the page's pytest section, one after another, as the page says."""
    text = PAGE.read_text()
    start, end = text.index(SECTION[0]), text.index(SECTION[1])
    return "\n\n".join(_PYTHON.findall(text[start:end]))


def test_the_example_runs_as_written_in_a_fresh_folder(pytester: pytest.Pytester) -> None:
    example = example_test_file()
    assert "@pytest.mark.asyncio" in example  # the marker the page says async tests need
    pytester.makepyfile(test_app=example)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    assert not list(pytester.path.glob("*.ini")) + list(pytester.path.glob("*.toml"))


def test_in_auto_mode_the_async_example_needs_no_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=example_test_file().replace("@pytest.mark.asyncio\n", ""))

    strict = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    auto = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")

    assert strict.parseoutcomes().get("passed") == 2  # the unmarked async test does not pass
    auto.assert_outcomes(passed=3)
