"""Validation of option values, shared by the client's settings and each call's options.

Every check takes the value and the argument's name, returns the value in its
canonical form, and raises a ValidationError naming the argument otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from apex_grpc._errors import ValidationError

MetadataValue = str | bytes
Metadata = tuple[tuple[str, MetadataValue], ...]
MetadataArg = Mapping[str, MetadataValue] | Sequence[tuple[str, MetadataValue]] | None


class NotGiven:
    """The type of `NOT_GIVEN`: an argument the caller did not pass."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final[NotGiven] = NotGiven()
"""Marks an argument the caller did not pass, so that None can mean "no timeout"."""


def timeout(value: object, argument: str) -> float | None:
    """None (no limit) or a positive, finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(argument, f"must be a number of seconds, got {type(value).__name__}")
    if not value > 0 or value != value or value == float("inf"):
        raise ValidationError(argument, f"must be > 0 seconds, got {value!r}")
    return float(value)


def max_retries(value: object, argument: str) -> int:
    """A whole number of retries, >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(argument, f"must be an integer >= 0, got {value!r}")
    return value


def boolean(value: object, argument: str) -> bool:
    """True or False (not a truthy stand-in)."""
    if not isinstance(value, bool):
        raise ValidationError(argument, f"must be True or False, got {value!r}")
    return value


def optional_boolean(value: object, argument: str) -> bool | None:
    """True, False or None (None: decide from elsewhere)."""
    return None if value is None else boolean(value, argument)


def positive_integer(value: object, argument: str) -> int:
    """A whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(argument, f"must be an integer, got {value!r}")
    if value < 1:
        raise ValidationError(argument, f"must be >= 1, got {value}")
    return value


def instance_of(expected: type | tuple[type, ...], what: str) -> Any:
    """A check that the value is an instance of `expected` (described as `what`)."""

    def check(value: object, argument: str) -> object:
        if not isinstance(value, expected):
            raise ValidationError(argument, f"must be {what}, got {type(value).__name__}")
        return value

    return check


_checked_metadata: dict[tuple[object, ...], Metadata] = {}
_CHECKED_METADATA_KEPT = 256


def metadata(value: MetadataArg, argument: str) -> Metadata:
    """User metadata: lowercase ASCII keys, no reserved or auth headers, bytes for -bin keys.

    A tuple that passed once is remembered (callers often pass the same constant on
    every call); other shapes are checked every time.
    """
    if value is None:
        return ()
    if type(value) is tuple:
        try:
            known = _checked_metadata.get(value)
        except TypeError:  # an unhashable entry: the check below names it
            known = None
        if known is not None:
            return known
        checked = _check_metadata(value, argument)
        if len(_checked_metadata) >= _CHECKED_METADATA_KEPT:
            _checked_metadata.clear()
        _checked_metadata[value] = checked
        return checked
    return _check_metadata(value, argument)


def _check_metadata(value: MetadataArg, argument: str) -> Metadata:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValidationError(
            argument,
            f"must be a dict or a list of (key, value) pairs, got {type(value).__name__}",
        )
    result: list[tuple[str, MetadataValue]] = []
    for index, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValidationError(f"{argument}[{index}]", "must be a (key, value) pair")
        key, entry = item
        where = f"{argument}[{key!r}]"
        if not isinstance(key, str) or not key or key != key.lower() or not key.isascii():
            raise ValidationError(where, "keys must be non-empty lowercase ASCII strings")
        if key.startswith("grpc-") or key in ("authorization", "te", "content-type"):
            raise ValidationError(where, "is reserved; set the API key with api_key=")
        if key.endswith("-bin"):
            if not isinstance(entry, bytes):
                raise ValidationError(where, "values of -bin keys must be bytes")
        elif not isinstance(entry, str) or not entry.isascii() or "\n" in entry or "\r" in entry:
            raise ValidationError(where, "values must be printable ASCII strings")
        result.append((key, entry))
    return tuple(result)
