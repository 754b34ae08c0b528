"""Where the gRPC server binds, and what its clients dial (standard library only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig


def bind_address(config: ServerConfig) -> tuple[str, str]:
    """(address to bind, target for clients)."""
    if config.unix_socket:
        path = str(Path(config.unix_socket).expanduser().absolute())
        return f"unix:{path}", f"unix:{path}"
    host = config.host
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    if ":" in connect:
        connect = f"[{connect}]"
    return f"{host}:{config.port}", connect
