"""The `apex_grpc` logger: one DEBUG line per RPC attempt, never the API key.

Set ``APEX_GRPC_LOG=debug`` (or info/warning) to print it to stderr without
configuring logging yourself.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("apex_grpc")
LOG_ENV_VAR = "APEX_GRPC_LOG"
_configured_from_env = False


def configure_from_env() -> None:
    """Attach a stderr handler at the level named by APEX_GRPC_LOG (once)."""
    global _configured_from_env
    if _configured_from_env:
        return
    _configured_from_env = True
    level_name = os.environ.get(LOG_ENV_VAR, "").strip().upper()
    if not level_name:
        return
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


_HEADER_TRACERS = frozenset({"all", "api", "http", "http2_stream_state", "channel"})
_warned_about_tracing = False


def warn_if_grpc_traces_headers() -> None:
    """Warn once when GRPC_TRACE makes grpc core print request headers (the key among them).

    grpc core's `api` and `http` tracers dump every metadata entry to stderr,
    authorization included; nothing above the core can redact that.
    """
    global _warned_about_tracing
    if _warned_about_tracing:
        return
    tracers = {t.strip().lower() for t in os.environ.get("GRPC_TRACE", "").split(",")}
    if tracers & _HEADER_TRACERS:
        _warned_about_tracing = True
        logger.warning(
            "GRPC_TRACE=%s makes grpc core print request headers to stderr, including the "
            "API key in `authorization`; do not enable it with a production key",
            os.environ["GRPC_TRACE"],
        )


def log_attempt(
    method: str,
    status: str,
    started: float,
    ended: float,
    attempt: int,
    request_id: str | None,
    extra: str = "",
) -> None:
    """One line per attempt: method, status, duration, attempt number, request id."""
    logger.debug(
        "rpc %s status=%s duration_ms=%.2f attempt=%d request_id=%s%s",
        method,
        status,
        (ended - started) * 1000.0,
        attempt,
        request_id or "-",
        extra,
    )
