"""Usage errors, failures and exit statuses: one clear line on stderr, never a traceback."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

import apex_grpc as mc
from apex_grpc import __version__
from apex_grpc.cli._errors import Endpoint, describe

from ._helpers import CLI, Result, client_env, closed_port, run

# grpc core's own log lines (absl format, e.g. "I1125 23:08:19.675588 24532 file.cc:12] ..."),
# which grpc prints for a failed TLS handshake; the CLI shows them only with --debug.
GRPC_CORE_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ", re.MULTILINE)


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version(cli: Callable[..., Result]) -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"apex-grpc {__version__}\n")


def test_the_console_script(cli_env: Mapping[str, str]) -> None:
    script = Path(sys.executable).with_name("apex-grpc")
    if not script.exists():
        pytest.skip("apex-grpc is not installed as a console script in this environment")
    result = run([str(script), "chat", "console script"], cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("console scriptconsole script")


@pytest.mark.parametrize(
    ("args", "usage", "message"),
    [
        (["chat", "--bogus", "hi"], "apex-grpc chat", "unrecognized arguments: --bogus"),
        (["frobnicate"], "apex-grpc", "invalid choice: 'frobnicate'"),
        ([], "apex-grpc", "required: COMMAND"),
        (["--timeout", "soon", "chat", "hi"], "apex-grpc", "invalid float value: 'soon'"),
        (["search"], "apex-grpc search", "required: query"),
        (["chats"], "apex-grpc chats", "required: ACTION"),
        (["chats", "list", "extra"], "apex-grpc chats list", "unrecognized arguments: extra"),
        (["--metadata", "novalue", "chat", "x"], "apex-grpc", "expected KEY=VALUE"),
    ],
)
def test_bad_command_lines_exit_2_with_usage(
    cli: Callable[..., Result], args: list[str], usage: str, message: str
) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: {usage}")
    assert message in result.stderr
    assert result.stdout == ""


def test_invalid_argument_names_the_flag(cli: Callable[..., Result]) -> None:
    result = cli("chat", "--temperature", "-1", "hi")
    assert result.returncode == 2
    assert one_error_line(result) == "error: --temperature: must be >= 0, got -1.0"


@pytest.mark.parametrize("command", [["chat", "hi"], ["search", "x"], ["chats", "list"]])
def test_unreachable_server(api_key: str, command: list[str]) -> None:
    port = closed_port()
    env = client_env(f"127.0.0.1:{port}", api_key)
    result = run([*CLI, "--max-retries", "0", *command], env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: UNAVAILABLE: could not reach 127.0.0.1:{port} (")
    # Nothing listens there: the line says how to start the local server on that port.
    assert line.endswith(
        f"); nothing is listening on 127.0.0.1:{port}: to serve apex.v1 there, start the local"
        f" server (`apex-grpc serve --port {port} --api-key KEY`), or point the client at a"
        " running server"
    ), line
    assert result.stdout == ""


def test_retries_are_counted(api_key: str) -> None:
    env = client_env(f"127.0.0.1:{closed_port()}", api_key)
    result = run([*CLI, "--max-retries", "1", "chat", "hi"], env)
    assert result.returncode == 1
    assert one_error_line(result).endswith("[after 2 attempts]")


def test_debug_shows_the_traceback(api_key: str) -> None:
    env = client_env(f"127.0.0.1:{closed_port()}", api_key)
    result = run([*CLI, "--max-retries", "0", "--debug", "chat", "hi"], env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "UnavailableError" in result.stderr
    assert "rpc /apex.v1.ApexService/ChatCompletionStream status=UNAVAILABLE" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: UNAVAILABLE: could not reach")


def test_wrong_key_never_prints_the_key(cli_env: Mapping[str, str]) -> None:
    key = "sk-wrong-key-that-must-stay-secret"
    result = run([*CLI, "--api-key", key, "--debug", "chats", "list"], cli_env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: UNAUTHENTICATED: ")
    assert "--api-key" in result.stderr.splitlines()[-1]
    assert key not in result.stderr + result.stdout


def test_missing_key(echo_target: str) -> None:
    result = run([*CLI, "chat", "hi"], client_env(echo_target, None))
    assert result.returncode == 2
    assert one_error_line(result) == (
        "error: no API key: pass --api-key KEY or set APEX_API_KEY (or MACROCOSMOS_API_KEY)"
    )


def test_plaintext_key_to_a_remote_host_is_refused(cli: Callable[..., Result]) -> None:
    result = cli("--base-url", "203.0.113.7:50051", "--insecure", "chat", "hi")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "'203.0.113.7:50051'" in line and "--allow-insecure-key" in line


def plaintext_hint(target: str) -> str:
    return (
        f"a local apex-grpc serve speaks plaintext: pass --insecure, set"
        f" MACROCOSMOS_USE_HTTPS=false, or use --base-url http://{target}"
    )


def test_environment_selects_tls(echo_target: str, api_key: str) -> None:
    # MACROCOSMOS_USE_HTTPS=true: the CLI speaks TLS to the plaintext server and fails,
    # in one line that says how to fix it (and no line of grpc core's).
    env = {**client_env(echo_target, api_key), "MACROCOSMOS_USE_HTTPS": "true"}
    result = run([*CLI, "--max-retries", "0", "--timeout", "5", "chats", "list"], env)
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"error: UNAVAILABLE: could not reach {echo_target} over TLS (the TLS handshake"
        f" failed); {plaintext_hint(echo_target)}"
    )
    # --insecure wins over the environment.
    assert run([*CLI, "--insecure", "chats", "list"], env).returncode == 0


def test_a_base_url_without_scheme_means_tls_and_the_hint_says_so(
    echo_target: str, api_key: str
) -> None:
    env = client_env(echo_target, api_key)
    del env["MACROCOSMOS_USE_HTTPS"]
    port = echo_target.rsplit(":", 1)[1]
    for target in (echo_target, f"localhost:{port}"):
        result = run([*CLI, "--base-url", target, "--max-retries", "1", "chat", "hi"], env)
        assert result.returncode == 1
        line = one_error_line(result)
        assert line.endswith(f"{plaintext_hint(target)} [after 2 attempts]"), line
        # The fix works as written.
        fixed = run([*CLI, "--base-url", f"http://{target}", "chat", "hi"], env)
        assert fixed.returncode == 0, fixed.stderr


@pytest.mark.parametrize(
    ("target", "secure", "hint"),
    [
        ("127.0.0.1:50051", True, True),
        ("127.8.9.10:50051", True, True),
        ("localhost:50051", True, True),
        ("[::1]:50051", True, True),
        ("dns:///localhost:50051", True, True),
        ("127.0.0.1:50051", False, False),  # plaintext already: the server is down
        ("192.0.2.1:50051", True, False),  # not this machine: not a local apex-grpc serve
        ("apex.example.com:443", True, False),
    ],
)
def test_the_plaintext_hint_is_for_tls_to_this_machine(
    target: str, secure: bool, hint: bool
) -> None:
    error = mc.UnavailableError("failed to connect to all addresses", attempts=1)
    message, status = describe(error, Endpoint(target, secure))
    assert status == 1
    assert ("MACROCOSMOS_USE_HTTPS=false" in message) is hint, message


def test_debug_shows_grpc_core_log_lines(echo_target: str, api_key: str) -> None:
    env = {**client_env(echo_target, api_key), "MACROCOSMOS_USE_HTTPS": "true"}
    result = run([*CLI, "--max-retries", "0", "--debug", "chats", "list"], env)
    assert result.returncode == 1
    assert GRPC_CORE_LOG.search(result.stderr), result.stderr
    assert "WRONG_VERSION_NUMBER" in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["chat", "-t", "5", "hi"], "error: INVALID_ARGUMENT: --temperature: must be in"),
        (["search", "-n", "1000", "x"], "error: INVALID_ARGUMENT: --n-results: must be in"),
        (["chat", "--max-new-tokens", "0", "hi"], "error: --max-new-tokens: must be >= 1, got 0"),
    ],
    ids=["server-chat", "server-search", "client"],
)
def test_invalid_arguments_exit_2_whoever_finds_them(
    cli: Callable[..., Result], args: list[str], line: str
) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert one_error_line(result).startswith(line)


def test_server_errors_carry_the_request_id(cli: Callable[..., Result]) -> None:
    result = cli(
        "--metadata", "x-echo-fail-code=RESOURCE_EXHAUSTED", "--metadata",
        "x-echo-fail-message=slow down", "--max-retries", "0", "chat", "hi",
    )  # fmt: skip
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("error: RESOURCE_EXHAUSTED: slow down [request id ")


PROBE = """
import sys
sys.modules["rich"] = None  # as if the cli extra were not installed
from apex_grpc.cli import main
status = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.startswith("apex_grpc_server"))
print("server modules:", loaded, file=sys.stderr)
sys.exit(status)
"""


def test_works_without_rich_and_without_the_server_package(cli_env: Mapping[str, str]) -> None:
    for args in (["chat", "hi"], ["search", "Bittensor", "-n", "1"], ["chats", "list"]):
        result = run([sys.executable, "-c", PROBE, *args], cli_env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.endswith("server modules: []\n"), result.stderr


@pytest.mark.parametrize("given", ["--api-key", "APEX_API_KEY", "MACROCOSMOS_API_KEY"])
@pytest.mark.parametrize(
    ("args", "rpcs"),
    [
        (["chats", "list"], ["GetChatSessions"]),
        (["chat", "hi"], ["ChatCompletionStream"]),
    ],
)
def test_the_error_line_scrubs_the_key_a_server_echoes(
    args: list[str], rpcs: list[str], given: str
) -> None:
    # A server (or a proxy) that repeats the caller's key in its error message: the CLI's
    # one line must not print it, on the terminal or in a CI log, however the key was given.
    from apex_grpc.testing import FakeApex, error

    with FakeApex() as fake:
        for rpc in rpcs:
            fake.on(rpc).reply(
                error("PERMISSION_DENIED", f"key {fake.api_key} may not do this ({fake.api_key})")
            )
        env = client_env(fake.target, None)
        if given == "--api-key":
            args = ["--api-key", fake.api_key, *args]
        else:
            env[given] = fake.api_key
        result = run([*CLI, *args], env)

    line = one_error_line(result)
    assert result.returncode != 0
    assert fake.api_key not in result.stderr and fake.api_key not in result.stdout
    assert "PERMISSION_DENIED" in line and "key *** may not do this (***)" in line


def reports_each_failure_with_its_hint(
    cli: Callable[..., Result], api_key: str, command: list[str], input: str = "", turns: int = 1
) -> None:
    """Run `command` against a server that refuses every call with a message repeating the
    key and pushes back past the call's deadline: the client fails at once, and each of the
    `turns` failures is printed as its error line, then its hint (why it was not retried),
    neither with the key."""
    result = cli(
        "--timeout", "5", "--metadata", "x-echo-fail-code=RESOURCE_EXHAUSTED",
        "--metadata", f"x-echo-fail-message=busy for key {api_key}",
        "--metadata", "x-echo-pushback-ms=60000", *command, input=input,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 * turns, result.stderr
    for error, hint in zip(lines[::2], lines[1::2], strict=True):
        assert error.startswith("error: RESOURCE_EXHAUSTED: busy for key *** [request id "), error
        assert hint == (
            "hint: the server asked to retry in 60000 ms, past the call's deadline; not retried"
        )
    assert api_key not in result.stderr + result.stdout


@pytest.mark.parametrize("command", [["chat", "hi"], ["chats", "list"]])
def test_the_error_line_is_followed_by_its_hint_with_the_key_scrubbed(
    cli: Callable[..., Result], api_key: str, command: list[str]
) -> None:
    reports_each_failure_with_its_hint(cli, api_key, command)


@pytest.mark.parametrize("save", [[], ["--save"]])
def test_each_failed_turn_of_the_chat_loop_prints_its_error_and_hint_with_the_key_scrubbed(
    cli: Callable[..., Result], api_key: str, save: list[str]
) -> None:
    # The interactive loop reports a failed turn and goes on: each turn's report is the
    # same two lines as a one-shot command's.
    command = ["chat", "-i", *save]
    reports_each_failure_with_its_hint(cli, api_key, command, input="first\nsecond\n", turns=2)


def test_an_error_without_a_hint_is_one_line(cli: Callable[..., Result]) -> None:
    result = cli("--metadata", "x-echo-fail-code=INTERNAL", "--max-retries", "0", "chats", "list")
    assert result.returncode == 1
    assert one_error_line(result).startswith("error: INTERNAL: failure injected")
