"""tools/llama_build.py: llama.cpp's build flags from the CPU's /proc/cpuinfo flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from llama_build import build_env, cmake_args, cpu_flags

# The flags line of the machines the project runs on, and of older ones (trimmed to ISA flags).
SAPPHIRE_RAPIDS = (
    "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 avx2 bmi2 avx512f avx512dq avx512ifma"
    " avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni"
    " avx512_bitalg avx512_vpopcntdq amx_bf16 avx512_fp16 amx_tile amx_int8"
)
ZEN5 = (
    "sse sse2 sse3 sse4_1 sse4_2 sse4a avx avx2 bmi2 f16c fma avx512f avx512bw avx512cd avx512dq"
    " avx512vl avx512vbmi avx512_vbmi2 avx512_vnni avx512_bf16 avx512_bitalg avx_vnni"
)
HASWELL = "sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
SANDY_BRIDGE = "sse sse2 ssse3 sse4_1 sse4_2 avx"
NEHALEM = "sse sse2 ssse3 sse4_1 sse4_2"
KNIGHTS_LANDING = "sse4_2 avx avx2 fma f16c bmi2 avx512f avx512cd avx512er avx512pf"


def args(flags: str, **kwargs: bool) -> dict[str, str]:
    """`cmake_args` on Linux x86_64, as {option: ON/OFF}."""
    line = cmake_args(flags.split(), "x86_64", "Linux", **kwargs)
    assert line is not None
    pairs = (item.removeprefix("-D").partition("=") for item in line.split())
    return {name: value for name, _, value in pairs}


def on(flags: str, **kwargs: bool) -> set[str]:
    return {name for name, value in args(flags, **kwargs).items() if value == "ON"}


def test_an_amx_xeon_gets_its_avx512_but_no_amx_and_no_native() -> None:
    settings = args(SAPPHIRE_RAPIDS)
    assert settings["GGML_NATIVE"] == "OFF"  # no -march=native: no AMX, no AVX512-FP16
    assert {"GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"} <= settings.keys()
    assert on(SAPPHIRE_RAPIDS) == {
        "GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2",
        "GGML_AVX_VNNI", "GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI",
        "GGML_AVX512_BF16",
    }  # fmt: skip


def test_every_option_is_set_explicitly() -> None:
    # With GGML_NATIVE=OFF llama.cpp turns AVX, AVX2, FMA, F16C, BMI2 and SSE4.2 ON by
    # default: on an older CPU an option left out would emit instructions it lacks.
    assert args(NEHALEM).keys() == args(SAPPHIRE_RAPIDS).keys()
    assert len(args(NEHALEM)) == 15


def test_older_cpus_get_exactly_what_they_have() -> None:
    assert on(ZEN5) == on(SAPPHIRE_RAPIDS)  # the same sets, without AMX to leave out
    assert on(HASWELL) == {
        "GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2",
    }  # fmt: skip
    assert on(SANDY_BRIDGE) == {"GGML_SSE42", "GGML_AVX"}
    assert on(NEHALEM) == {"GGML_SSE42"}
    assert on("sse sse2") == set()


def test_avx512_needs_all_five_of_its_subsets() -> None:
    # Knights Landing has AVX512F but not VL/BW/DQ, which GGML_AVX512 compiles for.
    assert "GGML_AVX512" not in on(KNIGHTS_LANDING)
    assert "GGML_AVX512_VNNI" not in on(KNIGHTS_LANDING + " avx512_vnni")


def test_the_conservative_build_stops_at_avx2() -> None:
    assert on(SAPPHIRE_RAPIDS, conservative=True) == on(HASWELL)
    assert args(SAPPHIRE_RAPIDS, conservative=True).keys() == args(SAPPHIRE_RAPIDS).keys()
    assert on(SANDY_BRIDGE, conservative=True) == {"GGML_SSE42", "GGML_AVX"}


@pytest.mark.parametrize(
    ("machine", "system"),
    [("aarch64", "Linux"), ("arm64", "Darwin"), ("x86_64", "Darwin"), ("AMD64", "Windows")],
)
def test_elsewhere_llama_cpp_keeps_its_defaults(machine: str, system: str) -> None:
    assert cmake_args(SAPPHIRE_RAPIDS.split(), machine, system) is None
    conservative = cmake_args([], machine, system, conservative=True)
    assert conservative == "-DGGML_NATIVE=OFF"


def test_cpuinfo_flags_are_read_from_the_first_flags_line() -> None:
    text = "processor\t: 0\nvendor_id\t: Intel\nflags\t\t: fpu avx2 amx_int8\n\nflags : sse\n"
    assert cpu_flags(text) == {"fpu", "avx2", "amx_int8"}
    assert cpu_flags("processor : 0\n") == frozenset()


def test_the_users_cmake_args_win() -> None:
    assert build_env({"CMAKE_ARGS": "-DGGML_NATIVE=ON"}, "-DX=1")["CMAKE_ARGS"] == (
        "-DGGML_NATIVE=ON"
    )
    assert build_env({"CMAKE_ARGS": ""}, "-DX=1")["CMAKE_ARGS"] == "-DX=1"  # empty: unset
    assert build_env({"PATH": "/bin"}, "-DX=1") == {"PATH": "/bin", "CMAKE_ARGS": "-DX=1"}
    assert "CMAKE_ARGS" not in build_env({}, None)
