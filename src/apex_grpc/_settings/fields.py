"""How a client option is declared (default, check, documentation), and the options' checks.

`ClientSettings` (client.py) declares each option with `option`, `required` or
`unset`; the checks below are the ones only client options use (those shared
with per-call options live in checks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any, Literal, TypeVar

from apex_grpc._errors import ValidationError
from apex_grpc._settings import checks
from apex_grpc._settings.checks import NOT_GIVEN, NotGiven
from apex_grpc._settings.configs import KeepAliveConfig, Secret

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_APP_NAME = "apex-grpc"
DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_MAX_STREAMS = 100
DEFAULT_CONNECTION_IDLE_S = 30.0

LoadBalancing = Literal["pick_first", "round_robin"]

T = TypeVar("T")
Check = Callable[[Any, str], T]


def option(
    default: T,
    doc: str,
    check: Check[T] | None = None,
    *,
    connection: bool = False,
    accepts: str = "",
) -> T:
    """Declare one client option: its default, its documentation and its check.

    The field's declared type must hold the default and what the check
    returns (mypy holds it to that). `connection` options shape the channel,
    so `with_options` cannot change them (a derived client shares its
    parent's connections). `accepts`: what the constructor's keyword takes,
    when it is more than the field's type (the check converts it).
    tools/codegen.py writes the clients' constructor from these declarations.
    """
    return field(default=default, metadata=_spec(doc, check, connection))


def required(doc: str, check: Check[T], *, connection: bool = False, accepts: str = "") -> T:
    """Declare an option `ClientSettings.create` always fills (from the environment
    or a derived default), so the settings never hold a placeholder for it; the
    constructor's keyword defaults to None."""
    return field(metadata=_spec(doc, check, connection))  # type: ignore[no-any-return]


def unset(doc: str, check: Check[T]) -> T:
    """Declare an option that stays NOT_GIVEN unless given (then each call decides)."""
    return field(default=NOT_GIVEN, metadata=_spec(doc, check, False))  # type: ignore[return-value]


def _spec(doc: str, check: Check[Any] | None, connection: bool) -> dict[str, Any]:
    return {"doc": doc, "check": check, "connection": connection}


def check_api_key(value: object, argument: str) -> Secret:
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str):
        raise ValidationError(argument, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValidationError(argument, "must be a non-empty string")
    problem = checks.unsendable(value)
    if problem is not None:  # grpc would refuse every call with "Invalid metadata"
        raise ValidationError(argument, problem)
    return Secret(value)


def check_app_name(value: object, argument: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(argument, "must be a non-empty string")
    return value


def check_optional_timeout(value: object, argument: str) -> float | NotGiven | None:
    return value if value is NOT_GIVEN else checks.timeout(value, argument)


def check_optional_max_retries(value: object, argument: str) -> int | NotGiven:
    return value if value is NOT_GIVEN else checks.max_retries(value, argument)


def check_positive_seconds(value: object, argument: str) -> float:
    seconds = checks.timeout(value, argument)
    if seconds is None:
        raise ValidationError(argument, "must be a number of seconds, got None")
    return seconds


def check_max_message_bytes(value: object, argument: str) -> int:
    return DEFAULT_MAX_MESSAGE_BYTES if value is None else checks.positive_integer(value, argument)


def check_load_balancing(value: object, argument: str) -> LoadBalancing | None:
    if value not in (None, "pick_first", "round_robin"):
        raise ValidationError(argument, f"must be 'pick_first' or 'round_robin', got {value!r}")
    return value


def check_channel_options(value: object, argument: str) -> tuple[tuple[str, str | int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValidationError(argument, f"must be a list of (name, value) pairs, got {value!r}")
    for index, pair in enumerate(value):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValidationError(f"{argument}[{index}]", "must be a (name, value) pair")
    return tuple(value)


def check_sequence(value: object, argument: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValidationError(argument, f"must be a list, got {type(value).__name__}")
    return tuple(value)


def check_keepalive(value: object, argument: str) -> KeepAliveConfig:
    if value is None:
        return KeepAliveConfig()
    return checks.instance_of(KeepAliveConfig, "a KeepAliveConfig")(value, argument)  # type: ignore[no-any-return]
