"""Turning exceptions into one clear line on stderr (and a hint line) and an exit status."""

from __future__ import annotations

import argparse
import os
import re
from typing import NamedTuple

import grpc

from apex_grpc import (
    ApexError,
    APIError,
    InsecureTransportError,
    InvalidArgumentError,
    MissingAPIKeyError,
    UnavailableError,
    ValidationError,
)
from apex_grpc._errors import nothing_listening_hint
from apex_grpc._settings.target import is_loopback_target

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
_TLS_FAILURE = re.compile(r"handshake|ssl|tls", re.IGNORECASE)
# An argument path at the start of a server's INVALID_ARGUMENT message.
_ARGUMENT_PATH = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


class Endpoint(NamedTuple):
    """Where the client was talking to, for messages about reaching it."""

    target: str
    secure: bool


class Interrupted(Exception):
    """The user pressed Ctrl-C; the RPC in flight was cancelled."""


class UsageError(Exception):
    """The command line makes no sense (exit status 2, with the usage line)."""


def key_in_use(args: argparse.Namespace) -> str | None:
    """The key in use, as given or from the environment (to keep it out of messages)."""
    for value in (
        args.api_key,
        os.environ.get("APEX_API_KEY"),
        os.environ.get("MACROCOSMOS_API_KEY"),
    ):
        if value and value.strip():
            return value.strip()
    return None


def one_line(text: str) -> str:
    """Collapse whitespace, so a message is exactly one line."""
    return " ".join(text.split())


def describe(error: BaseException, endpoint: Endpoint | None = None) -> tuple[str, int]:
    """The message (without the ``error:`` prefix) and the exit status for an error.

    Invalid arguments exit 2 whether the client or the server found them.
    """
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
        status = EXIT_USAGE if isinstance(error, InvalidArgumentError) else EXIT_ERROR
        return _describe_api_error(error, endpoint), status
    if isinstance(error, ApexError):
        return str(error), EXIT_ERROR
    return (
        f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)",
        EXIT_ERROR,
    )


def _describe_api_error(error: APIError, endpoint: Endpoint | None) -> str:
    extra = []
    if error.attempts > 1:
        extra.append(f"after {error.attempts} attempts")
    if error.request_id:
        extra.append(f"request id {error.request_id}")
    suffix = f" [{'; '.join(extra)}]" if extra else ""
    return f"{error.code.name}: {_details(error, endpoint)}{suffix}"


def _details(error: APIError, endpoint: Endpoint | None) -> str:
    details = error.details or error.code.name
    advice = _reach_advice(error, endpoint)
    if advice is not None:
        return advice
    if error.code is grpc.StatusCode.UNAUTHENTICATED:
        return f"{details} (check --api-key / APEX_API_KEY)"
    if isinstance(error, InvalidArgumentError):
        return _ARGUMENT_PATH.sub(lambda m: f"{FLAGS.get(m[1], m[1])}: ", details, count=1)
    return details


def _reach_advice(error: APIError, endpoint: Endpoint | None) -> str | None:
    """The CLI's own account of a server it could not reach (None: not that failure).

    It replaces the error's hint, which speaks of the SDK's options (``secure=False``)
    rather than the CLI's flags.
    """
    if not isinstance(error, UnavailableError) or endpoint is None:
        return None
    details = error.details or error.code.name
    start_the_server = nothing_listening_hint(details)
    if start_the_server is not None:
        return f"could not reach {endpoint.target} ({details}); {start_the_server}"
    if endpoint.secure and is_loopback_target(endpoint.target):
        return _plaintext_hint(details, endpoint.target)
    if _CONNECT_FAILURE.search(details):
        return f"could not reach {endpoint.target} ({details})"
    return None


def _plaintext_hint(details: str, target: str) -> str:
    # TLS to a loopback address that did not answer: most likely a local `apex-grpc serve`,
    # which speaks plaintext. grpc's own account of a failed handshake is a wall of
    # OpenSSL text; the fix is what the user needs.
    reason = "the TLS handshake failed" if _TLS_FAILURE.search(details) else details
    return (
        f"could not reach {target} over TLS ({reason}); a local apex-grpc serve speaks"
        f" plaintext: pass --insecure, set MACROCOSMOS_USE_HTTPS=false, or use"
        f" --base-url http://{target}"
    )


def hint_line(error: BaseException, endpoint: Endpoint | None = None) -> str | None:
    """``hint: ...``, what to do about `error`, when it carries a hint the error line lacks."""
    if not isinstance(error, APIError) or not error.hint:
        return None
    if _reach_advice(error, endpoint) is not None:
        return None
    return one_line(f"hint: {error.hint}")


def error_line(
    error: BaseException, endpoint: Endpoint | None = None, secret: str | None = None
) -> str:
    """``error: ...`` as printed, one line, then its ``hint: ...`` line if it has one.

    Neither line ever contains `secret` (the API key).
    """
    message, _ = describe(error, endpoint)
    lines = [one_line(f"error: {message}")]
    hint = hint_line(error, endpoint)
    if hint is not None:
        lines.append(hint)
    text = "\n".join(lines)
    # Messages come from statuses, never from request metadata; this is a last guard,
    # for keys long enough that replacing them cannot mangle ordinary words.
    if secret and len(secret) >= MIN_SECRET_CHARS:
        text = text.replace(secret, "***")
    return text
