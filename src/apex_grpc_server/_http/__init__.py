"""The HTTP face: apex.v1 over Connect and gRPC-Web, beside the gRPC port, in the same process.

``apex-grpc serve --http-port N`` turns it on. `app` says how an HTTP call
reaches the very servicer a gRPC call reaches, `context` is the adapter that
makes that possible, `cors` lets the allowed browser pages in, `server` runs
hypercorn on the server's loop. This module is standard library only: without
``http_port`` the server imports none of connectrpc or hypercorn.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig
    from apex_grpc_server._http.server import HttpFace
    from apex_grpc_server._rpc.routes import ApexRoutes

__all__ = ["bind_http", "start_http"]

BACKLOG = 1024


def bind_http(config: ServerConfig) -> socket.socket | None:
    """The HTTP face's listening socket on ``host:http_port`` (None: no HTTP face).

    Bound before anything else is built, like the gRPC port: a busy port fails first.
    """
    if config.http_port is None:
        return None
    host = config.host or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, config.http_port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno, f"cannot serve HTTP on {host}:{config.http_port}: {error.strerror}"
        ) from None
    return sock


async def start_http(
    config: ServerConfig, routes: ApexRoutes, sock: socket.socket | None, health: Any
) -> HttpFace | None:
    """Serve `routes` (and `health`'s Check, unless None) on `sock` (from `bind_http`).

    None when there is no socket (no ``http_port``).
    """
    if sock is None:
        return None
    from apex_grpc_server._http.server import HttpFace

    face = HttpFace(config, routes, sock, health)
    await face.start()
    return face
