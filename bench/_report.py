"""The results table: rows of measured values with their targets, rendered as Markdown."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import __version__ as protobuf_version

import apex_grpc


@dataclass
class Row:
    """One line of the results table; `data` keeps the raw numbers for the JSON file."""

    scenario: str
    target: str
    raw: str = ""
    ours: str = ""
    result: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """`**median unit** (min-max)` of `values`, each number formatted with `fmt`."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"**{median:{fmt}}{unit}**"
    return f"**{median:{fmt}}{unit}** ({min(values):{fmt}}-{max(values):{fmt}})"


def ratio_row(
    scenario: str,
    unit: str,
    target: str,
    raw: list[float],
    ours: list[float],
    meets: Callable[[float], bool] | None,
    raw_label: str = "",
) -> Row:
    """A row comparing apex-grpc with a baseline measured in the same rounds.

    The ratio is ours / baseline per round; the result is its median and
    min-max; `meets` judges the median (None: reported, no target).
    """
    row = Row(scenario, target)
    if not ours:
        row.result = "skipped"
        return row
    ratios = [o / r for r, o in zip(raw, ours, strict=True)]
    row.raw = f"{raw_label}{statistics.median(raw):,.0f} {unit}"
    row.ours = f"{statistics.median(ours):,.0f} {unit}"
    row.result = spread(ratios, ".2f", "x")
    row.met = meets(statistics.median(ratios)) if meets else None
    row.data = {"raw": raw, "ours": ours, "ratios": ratios}
    return row


def value_row(
    scenario: str, unit: str, target: str, values: list[float], meets: Callable[[float], bool]
) -> Row:
    """A row of one measured quantity (median and min-max) against a target."""
    row = Row(scenario, target, data={"values": values})
    row.result = spread(values, ".0f", f" {unit}")
    row.met = meets(statistics.median(values))
    return row


def plural(count: float, word: str, words: str = "") -> str:
    """`1 connection`, `10 connections` (`words`: the plural, when not word + s)."""
    return f"{count:,.0f} {word if count == 1 else words or word + 's'}"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": str(os.cpu_count()),
        "load": f"{load[0]:.1f}",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "apex-grpc": apex_grpc.__version__,
        "platform": platform.platform(),
    }


def render(rows: list[Row], notes: list[str], info: dict[str, str]) -> str:
    """The results as a Markdown table, then each row's notes, then `notes`."""
    lines = [
        "| scenario | raw grpcio (or other side) | apex-grpc | result (median, min-max) "
        "| target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "**no**", None: "n/a"}[row.met]
        lines.append(
            f"| {row.scenario} | {row.raw} | {row.ours} | {row.result} | {row.target} | {met} |"
        )
    lines.append("")
    lines.extend(f"- {row.scenario}: {note}" for row in rows for note in row.notes)
    lines.extend(f"- {note}" for note in notes)
    lines.append(
        f"- Machine: {info['cores']} cores (1-minute load average {info['load']}), "
        f"Python {info['python']}, grpcio {info['grpcio']}, protobuf {info['protobuf']}, "
        f"apex-grpc {info['apex-grpc']}, {info['platform']}."
    )
    return "\n".join(lines) + "\n"
