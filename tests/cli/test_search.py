"""``apex-grpc search``: a readable list on a pipe, or the WebRetrievalResponse as JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ._helpers import Result


def test_results_as_a_readable_list(cli: Callable[..., Result]) -> None:
    result = cli("search", "What", "is", "Bittensor?", "-n", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1. Apex and Bittensor"  # the page's title, not its url
    assert lines[1] == "   apex-grpc:docs/apex"
    assert lines[2].startswith("   ") and "Bittensor" in lines[2]
    numbered = [line for line in lines if re.match(r"\d+\. ", line)]
    assert len(numbered) == 2
    assert "\x1b[" not in result.stdout  # no colours on a pipe


def test_n_limits_the_results(cli: Callable[..., Result]) -> None:
    result = cli("search", "Bittensor", "-n", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. ") and "\n2. " not in result.stdout


def test_json_is_the_response(cli: Callable[..., Result]) -> None:
    result = cli("search", "--json", "What is Apex?", "--n-results", "3")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert 1 <= len(response["results"]) <= 3
    assert {"url", "content", "relevant"} <= set(response["results"][0])


def test_no_results_is_not_an_error(cli: Callable[..., Result]) -> None:
    result = cli("search", "zzqxvkjwpq")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "no results\n"
