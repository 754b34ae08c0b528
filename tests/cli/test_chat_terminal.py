"""``apex-grpc chat`` in a real (pseudo-)terminal: what a user at the keyboard sees.

Keys are typed into the terminal (Ctrl-C is the byte 0x03, which the terminal
turns into SIGINT and echoes as ``^C``); the screen is everything the command
wrote, in order, with ``\\r\\n`` line ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from ._helpers import CLI
from ._terminal import CTRL_C, CTRL_D, Terminal
from .test_chat import echo_answer

# CPython's input() loses a SIGINT that lands before it starts waiting for the keyboard:
# type Ctrl-C at a prompt only once it has been shown for a while.
PROMPT_SETTLE_S = 0.5
ALPHABET = b"abcdefghijklmnopqrstuvwxyz"


def knobs(*pairs: str) -> list[str]:
    """``--metadata`` flags for the echo server's x-echo-* knobs."""
    return [flag for pair in pairs for flag in ("--metadata", f"x-echo-{pair}")]


def test_a_conversation_on_a_terminal(cli_env: Mapping[str, str]) -> None:
    with Terminal([*CLI, "chat"], cli_env) as term:  # no prompt, a terminal: interactive
        assert b"Ctrl-D or /exit quits; /help" in term.read_until(b"> ")
        term.type(b"terminal turn\n")
        assert echo_answer("terminal turn").encode() + b"\r\n> " in term.read_until(b"> ")
        term.type(b"/help\n")
        shown = term.read_until(b"> ").decode()
        assert all(name in shown for name in ("/help", "/reset", "/exit"))
        term.type(b"/nonsense\n")
        assert b"unknown command /nonsense (/help lists them)" in term.read_until(b"> ")
        term.type(b"/exit\n")
        assert term.wait() == 0


def test_ctrl_d_after_a_failed_turn_exits_0_on_a_line_of_its_own(
    cli_env: Mapping[str, str],
) -> None:
    with Terminal([*CLI, *knobs("fail-code=INTERNAL"), "chat"], cli_env) as term:
        term.read_until(b"> ")
        term.type(b"this fails\n")
        assert b"error: INTERNAL: failure injected" in term.read_until(b"> ")
        term.type(CTRL_D)
        assert term.wait() == 0  # the failure was reported on the spot
    assert term.screen.endswith(b"> \r\n")  # the shell's prompt gets a line of its own


def test_ctrl_c_at_the_prompt_exits_130_on_a_line_of_its_own(cli_env: Mapping[str, str]) -> None:
    with Terminal([*CLI, "chat"], cli_env) as term:
        term.read_until(b"> ")
        time.sleep(PROMPT_SETTLE_S)
        term.type(CTRL_C)
        assert term.wait() == 130
    assert term.screen.endswith(b"\r\n")
    assert term.text().splitlines()[-1] in ("> ^C", "> ")  # readline may not echo ^C


def test_ctrl_c_before_the_first_chunk_ends_the_line(cli_env: Mapping[str, str]) -> None:
    # The server holds the answer for 10 s: Ctrl-C comes before anything was printed.
    with Terminal([*CLI, *knobs("sleep-ms=10000"), "chat", "hi"], cli_env) as term:
        time.sleep(PROMPT_SETTLE_S)
        term.type(CTRL_C)
        assert term.wait() == 130
    assert term.screen == b"^C\r\n"


def test_no_chunk_is_printed_after_ctrl_c(cli_env: Mapping[str, str]) -> None:
    # A chunk every 5 ms: one has usually just arrived when Ctrl-C is pressed. Three
    # answers are cancelled; after each ^C comes the new line, the note and the prompt.
    slow = knobs("chunks=2000", "delay-ms=5")
    with Terminal([*CLI, *slow, "chat"], cli_env) as term:
        term.read_until(b"> ")
        for _ in range(3):
            term.type(ALPHABET + b"\n")
            term.read_until(b"\r\n" + ALPHABET[:16])  # the answer is under way
            time.sleep(0.1)
            term.type(CTRL_C)
            shown = term.read_until(b"(answer cancelled)\r\n> ")
            assert shown.split(b"^C")[-1] == b"\r\n(answer cancelled)\r\n> ", shown
        term.type(CTRL_D)
        assert term.wait() == 0


def test_debug_log_lines_never_join_the_answer(cli_env: Mapping[str, str]) -> None:
    with Terminal([*CLI, "--debug", "chat", "hi"], cli_env) as term:
        assert term.wait() == 0
    lines = term.text().splitlines()
    assert echo_answer("hi") in lines  # the answer has its line to itself
    log = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+ apex_grpc DEBUG rpc /apex\.v1\.ApexService/")
    assert any(log.match(line) for line in lines), lines
