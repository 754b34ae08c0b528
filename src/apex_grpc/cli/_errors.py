"""Turning exceptions into one clear line on stderr and an exit status."""

from __future__ import annotations

import re

import grpc

from apex_grpc import (
    ApexError,
    APIError,
    InsecureTransportError,
    MissingAPIKeyError,
    ValidationError,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a command stopped by Ctrl-C."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: the reader of stdout went away (``apex-grpc ... | head``)."""

# Client argument names as the CLI spells them.
FLAGS = {
    "api_key": "--api-key",
    "base_url": "--base-url",
    "timeout": "--timeout",
    "max_retries": "--max-retries",
    "app_name": "--app-name",
    "metadata": "--metadata",
    "load_balancing": "--load-balancing",
    "sampling_parameters.temperature": "--temperature",
    "sampling_parameters.top_p": "--top-p",
    "sampling_parameters.top_k": "--top-k",
    "sampling_parameters.max_new_tokens": "--max-new-tokens",
    "seed": "--seed",
    "model": "--model",
    "n_results": "--n-results",
    "max_response_time": "--max-response-time",
}

MIN_SECRET_CHARS = 8
_CONNECT_FAILURE = re.compile(r"connect|dns|resolv|unreachable|refused", re.IGNORECASE)


class Interrupted(Exception):
    """The user pressed Ctrl-C; the RPC in flight was cancelled."""


class UsageError(Exception):
    """The command line makes no sense (exit status 2, with the usage line)."""


def one_line(text: str) -> str:
    """Collapse whitespace, so a message is exactly one line."""
    return " ".join(text.split())


def describe(error: BaseException, target: str | None = None) -> tuple[str, int]:
    """The message (without the ``error:`` prefix) and the exit status for an error."""
    if isinstance(error, MissingAPIKeyError):
        return (
            "no API key: pass --api-key KEY or set APEX_API_KEY (or MACROCOSMOS_API_KEY)",
            EXIT_USAGE,
        )
    if isinstance(error, InsecureTransportError):
        reason = error.problem.split(". ", 1)[0]
        return (
            f"{reason}; use TLS (--secure, the default), or pass --allow-insecure-key "
            "(APEX_GRPC_ALLOW_INSECURE_KEY=1) if the network path is trusted",
            EXIT_USAGE,
        )
    if isinstance(error, ValidationError):
        return f"{FLAGS.get(error.argument, error.argument)}: {error.problem}", EXIT_USAGE
    if isinstance(error, APIError):
        return _describe_api_error(error, target), EXIT_ERROR
    if isinstance(error, ApexError):
        return str(error), EXIT_ERROR
    return (
        f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)",
        EXIT_ERROR,
    )


def _describe_api_error(error: APIError, target: str | None) -> str:
    details = error.details or error.code.name
    if error.code is grpc.StatusCode.UNAVAILABLE and target and _CONNECT_FAILURE.search(details):
        details = f"could not reach {target} ({details})"
    elif error.code is grpc.StatusCode.UNAUTHENTICATED:
        details = f"{details} (check --api-key / APEX_API_KEY)"
    extra = []
    if error.attempts > 1:
        extra.append(f"after {error.attempts} attempts")
    if error.request_id:
        extra.append(f"request id {error.request_id}")
    suffix = f" [{'; '.join(extra)}]" if extra else ""
    return f"{error.code.name}: {details}{suffix}"


def error_line(error: BaseException, target: str | None = None, secret: str | None = None) -> str:
    """``error: ...`` as printed, one line, never containing `secret` (the API key)."""
    message, _ = describe(error, target)
    text = one_line(f"error: {message}")
    # Messages come from statuses, never from request metadata; this is a last guard,
    # for keys long enough that replacing them cannot mangle ordinary words.
    if secret and len(secret) >= MIN_SECRET_CHARS:
        text = text.replace(secret, "***")
    return text
