"""What ``apex-grpc serve`` checks before touching anything, and tells a user once serving.

Standard library only: it runs before the server (and grpc) is imported.
"""

from __future__ import annotations

import errno
import shlex
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig
    from apex_grpc_server._runtime.server import ServerInfo


class ListenError(OSError):
    """The configured address cannot be listened on (busy port, unknown host, no permission)."""


def check_port(config: ServerConfig) -> None:
    """Raise ListenError if the server could not listen on ``config.host:config.port`` now.

    A throw-away socket binds each address the host resolves to, with the
    same SO_REUSEADDR grpc uses (a port in TIME_WAIT is free; one with a
    listener is not). Port 0 always passes; a unix socket needs its folder.
    """
    if config.unix_socket:
        folder = Path(config.unix_socket).expanduser().absolute().parent
        if not folder.is_dir():
            raise ListenError(f"cannot listen on unix:{config.unix_socket}: no folder {folder}")
        return
    if config.port == 0:
        return
    where = f"{config.host}:{config.port}"
    try:
        addresses = socket.getaddrinfo(
            config.host or None, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {where}: unknown host ({error.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise ListenError(
                        f"port {config.port} on {config.host} is already in use (another"
                        " apex-grpc serve?): stop that server, or pick another port with"
                        " --port (--port 0 picks a free one)"
                    ) from None
                raise ListenError(f"cannot listen on {where}: {error.strerror}") from None


def client_exports(info: ServerInfo, keys_on_command_line: Sequence[str]) -> str:
    """Shell lines that point apex-grpc (and the official SDK 2.1.0) at this server.

    The base URL's scheme says plaintext or TLS by itself; the API key is
    printed only when exactly one was given with ``--api-key`` (it is on the
    command line already), a placeholder otherwise.
    """
    config = info.config
    secure = bool(config.tls_cert)
    if config.unix_socket:
        base_url = info.target
    else:
        base_url = f"{'https' if secure else 'http'}://{info.target}"
    if len(keys_on_command_line) == 1:
        key = shlex.quote(keys_on_command_line[0])
    elif config.allow_any_key:
        key = "dev-key  # --allow-any-key: any non-empty key is accepted"
    else:
        key = "'<one of the keys this server accepts>'"
    lines = [
        f"# apex-grpc serve is ready on {info.target}. In another shell:",
        f"export MACROCOSMOS_BASE_URL={shlex.quote(base_url)}",
        f"export MACROCOSMOS_USE_HTTPS={'true' if secure else 'false'}",
        f"export APEX_API_KEY={key}",
    ]
    if info.http_port is not None:
        host = info.target.rsplit(":", 1)[0]
        lines.append(f"# over HTTP (Connect, gRPC-Web, curl): http://{host}:{info.http_port}")
    return "\n".join(lines)
