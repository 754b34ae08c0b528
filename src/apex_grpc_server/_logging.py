"""Logging: one line per call, never the API key."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("apex_grpc_server")
"""The server's logger; every call logs one INFO line on it."""


def log_call(method: str, code: str, duration_s: float, peer: str, request_id: str) -> None:
    """Log one finished call: method, status code name, duration, peer, request id."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "%s %s %.1fms peer=%s request_id=%s",
            method,
            code,
            duration_s * 1000,
            peer,
            request_id,
        )


def configure_logging(level: str | int = "INFO") -> None:
    """Send the server's logs to stderr at ``level`` (for the CLI)."""
    if isinstance(level, str):
        level = level.upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("apex_grpc_server")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
