"""How `make venv` has pip compile llama.cpp (llama-cpp-python) for the CPU it runs on.

llama.cpp's default build (``GGML_NATIVE=ON``) compiles with ``-march=native``:
on an Intel Xeon with AMX that turns on the AMX kernels, which repack
Q4_0/Q4_1/Q8_0 weights into tiles at load time and crash (SIGSEGV) at the
first prompt of more than one token (llama.cpp issue 20824, pull request
26954). So on Linux x86_64, when the user has not set ``CMAKE_ARGS``, the
build gets ``GGML_NATIVE=OFF`` plus, one by one, exactly the instruction sets
/proc/cpuinfo reports (AVX2, FMA, AVX-512, VNNI ...), AMX always off: the
speed of a native build without its crashing kernels, and never an
instruction the CPU lacks (with ``GGML_NATIVE=OFF`` llama.cpp would otherwise
assume AVX2, FMA, F16C and BMI2). ``conservative`` is the fallback when even
that build crashes: the AVX2-level sets only, what a portable wheel has.

Elsewhere (ARM, macOS, Windows) llama.cpp's own defaults stay: its native
builds there probe each feature and have no AMX; their conservative build is
``GGML_NATIVE=OFF``, llama.cpp's generic one for the architecture.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
LLAMA = "llama-cpp-python"

# llama.cpp's CMake option -> the /proc/cpuinfo flags it compiles for (all needed).
# GGML_AVX512 passes -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
AVX2_LEVEL: tuple[tuple[str, frozenset[str]], ...] = (
    ("GGML_SSE42", frozenset({"sse4_2"})),
    ("GGML_AVX", frozenset({"avx"})),
    ("GGML_AVX2", frozenset({"avx2"})),
    ("GGML_FMA", frozenset({"fma"})),
    ("GGML_F16C", frozenset({"f16c"})),
    ("GGML_BMI2", frozenset({"bmi2"})),
)
AVX512 = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"})
BEYOND_AVX2: tuple[tuple[str, frozenset[str]], ...] = (
    ("GGML_AVX_VNNI", frozenset({"avx_vnni"})),
    ("GGML_AVX512", AVX512),
    ("GGML_AVX512_VBMI", AVX512 | {"avx512vbmi"}),
    ("GGML_AVX512_VNNI", AVX512 | {"avx512_vnni"}),
    ("GGML_AVX512_BF16", AVX512 | {"avx512_bf16"}),
)
# Never on: the AMX kernels are what crashes (see the module docstring).
ALWAYS_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
X86_64 = frozenset({"x86_64", "amd64"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of the first ``flags`` line of /proc/cpuinfo's text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cmake_args(
    flags: Iterable[str], machine: str, system: str, *, conservative: bool = False
) -> str | None:
    """The ``CMAKE_ARGS`` for llama.cpp on this CPU, or None to keep llama.cpp's defaults.

    `flags` are /proc/cpuinfo's; `machine` and `system` are ``platform.machine()`` and
    ``platform.system()``. On Linux x86_64 every option is set ON or OFF explicitly;
    `conservative` leaves out everything past AVX2 (AVX-512, VNNI) there, and is the
    generic ``GGML_NATIVE=OFF`` build elsewhere.
    """
    if system != "Linux" or machine.lower() not in X86_64:
        return "-DGGML_NATIVE=OFF" if conservative else None
    have = frozenset(flags)
    options = AVX2_LEVEL if conservative else AVX2_LEVEL + BEYOND_AVX2
    settings = [("GGML_NATIVE", False)]
    settings += [(name, needs <= have) for name, needs in options]
    if conservative:
        settings += [(name, False) for name, _ in BEYOND_AVX2]
    settings += [(name, False) for name in ALWAYS_OFF]
    return " ".join(f"-D{name}={'ON' if on else 'OFF'}" for name, on in settings)


def this_machine_args(*, conservative: bool = False) -> str | None:
    """`cmake_args` for the machine this runs on (no flags when /proc/cpuinfo is unreadable)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return cmake_args(
        cpu_flags(text), platform.machine(), platform.system(), conservative=conservative
    )


def build_env(environ: Mapping[str, str], args: str | None) -> dict[str, str]:
    """`environ` with ``CMAKE_ARGS`` set to `args`, unless the user set it (their choice wins)."""
    env = dict(environ)
    if args is not None and not env.get("CMAKE_ARGS"):
        env["CMAKE_ARGS"] = args
    return env


if __name__ == "__main__":
    # `python tools/llama_build.py [--conservative]`: the CMAKE_ARGS for this machine.
    print(this_machine_args(conservative="--conservative" in sys.argv[1:]) or "")
