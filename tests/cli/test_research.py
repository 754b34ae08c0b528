"""``apex-grpc research``: submit and watch, --detach, --job to resume, progress on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Callable, Mapping

from ._helpers import CLI, ROOT, Result

JOB_ID = re.compile(r"^[0-9a-f-]{36}$")


def test_watches_the_job_and_prints_the_result(cli: Callable[..., Result]) -> None:
    result = cli("research", "What is Bittensor?")
    assert result.returncode == 0, result.stderr
    assert "Sources" in result.stdout and "apex-grpc:docs/apex" in result.stdout
    notes = result.stderr.splitlines()
    assert notes[0].startswith("submitted deep-research job ")
    assert re.fullmatch(r"research: job [0-9a-f]{8} completed, \d+ chunks?", notes[-1])
    assert "\x1b[" not in result.stdout + result.stderr  # plain text on a pipe


def test_detach_then_resume(cli: Callable[..., Result]) -> None:
    detached = cli("research", "--detach", "What is Apex?")
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    assert JOB_ID.match(job_id), detached.stdout
    resumed = cli("research", "--job", job_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    job = json.loads(resumed.stdout)
    assert job["job_id"] == job_id and job["status"] == "completed"
    # Each chunk is JSON text on the wire; the CLI prints it decoded, not as a string.
    assert job["result"] and all(isinstance(c["chunk"], list) for c in job["result"])
    assert all(isinstance(item["content"], str) for c in job["result"] for item in c["chunk"])
    assert [c.get("seq_id", 0) for c in job["result"]] == list(range(len(job["result"])))


def test_detach_json_is_the_submit_response(cli: Callable[..., Result]) -> None:
    result = cli("research", "--detach", "--json", "What is TAO?")
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert JOB_ID.match(submitted["job_id"]) and submitted["status"]


def test_question_from_stdin(cli: Callable[..., Result]) -> None:
    result = cli("research", "--detach", input="What is a subnet?\n")
    assert result.returncode == 0, result.stderr
    assert JOB_ID.match(result.stdout.strip())


def test_unknown_job_is_not_found(cli: Callable[..., Result]) -> None:
    result = cli("research", "--job", "no-such-job")
    assert result.returncode == 1
    assert result.stderr.startswith("error: NOT_FOUND: ")
    assert len(result.stderr.splitlines()) == 1


def test_job_and_question_together_is_a_usage_error(cli: Callable[..., Result]) -> None:
    result = cli("research", "--job", "abc", "a question")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: apex-grpc research")


def test_a_terminal_gets_a_live_progress_display(cli_env: Mapping[str, str]) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*CLI, "research", "What is Bittensor?"],
        env={**cli_env, "TERM": "xterm-256color", "COLUMNS": "100"},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    os.close(secondary)
    screen = b""
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(primary)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None
    process.stderr.close()
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # colours and cursor control
    assert re.search(r"research: job [0-9a-f]{8} .*completed", text)  # the spinner's line
    assert "Sources" in text  # then the result
