"""Small argument validators shared by the request builders.

Each returns the value (possibly converted) or raises a ValidationError that
names the argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from apex_grpc._errors import ValidationError


def text(value: object, argument: str) -> str:
    """A string (possibly empty)."""
    if not isinstance(value, str):
        raise ValidationError(argument, f"must be a string, got {type(value).__name__}")
    return value


def required_text(value: object, argument: str) -> str:
    """A string with something other than whitespace in it."""
    result = text(value, argument)
    if not result.strip():
        raise ValidationError(argument, "must not be empty")
    return result


def flag(value: object, argument: str) -> bool:
    """A real bool (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise ValidationError(argument, f"must be True or False, got {value!r}")
    return value


def number(value: object, argument: str) -> float:
    """A finite int or float (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(argument, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValidationError(argument, f"must be finite, got {value}")
    return float(value)


INT64_MAX = 2**63 - 1


def integer(value: object, argument: str, *, minimum: int, maximum: int = INT64_MAX) -> int:
    """An int (bools excluded) in [minimum, maximum]; by default what an int64 field holds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(argument, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValidationError(argument, f"must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValidationError(argument, f"must be <= {maximum}, got {value}")
    return value


def uids(value: object) -> list[int]:
    """A list of miner UIDs (non-negative int64s)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError("uids", f"must be a list of integers, got {type(value).__name__}")
    for index, uid in enumerate(value):
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 2**63:
            raise ValidationError(f"uids[{index}]", f"must be an integer >= 0, got {uid!r}")
    return list(value)


def ids(value: object, argument: str) -> list[str]:
    """One id or a non-empty list of ids."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, bytes) or not isinstance(items, Sequence):
        raise ValidationError(
            argument, f"must be an id or a list of ids, got {type(value).__name__}"
        )
    if not items:
        raise ValidationError(argument, "must not be empty")
    return [required_text(item, f"{argument}[{i}]") for i, item in enumerate(items)]


def unencodable(error: ValueError, arguments: Mapping[str, object]) -> ValueError:
    """The error to raise for `error`, which protobuf raised building a request from
    `arguments` (name -> value): a ValidationError naming the first text in them that UTF-8
    cannot encode (a lone surrogate such as ``"\\ud800"``; protobuf's upb raises
    UnicodeEncodeError, its Python implementation ValueError), found by a walk through
    their lists and dicts; `error` itself if no text is at fault.

    Builders call it only once protobuf has raised, so valid text pays nothing for the check.
    """
    if isinstance(error, ValidationError):
        return error
    for name, value in arguments.items():
        found = _unencodable_in(value, name)
        if found is not None:
            return found
    return error


def _unencodable_in(value: object, where: str) -> ValidationError | None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as bad:
            character = value[bad.start]
            return ValidationError(
                where, f"cannot be encoded as UTF-8: {character!r} at index {bad.start}"
            )
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _unencodable_in(key, f"{where}[{key!r}]") or _unencodable_in(
                item, f"{where}[{key!r}]"
            )
            if found is not None:
                return found
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        for index, item in enumerate(value):
            found = _unencodable_in(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None
