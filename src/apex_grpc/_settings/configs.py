"""The small value types of the settings: a secret that hides itself, TLS and keepalive configs."""

from __future__ import annotations

import os
from dataclasses import dataclass


class Secret:
    """A string that never shows itself in repr, str or format()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; only for building the authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values cannot be pickled")


@dataclass(frozen=True)
class KeepAliveConfig:
    """HTTP/2 keepalive pings; the defaults detect a dead connection within ~40 s."""

    interval: float = 30.0
    """Seconds between pings while calls are in flight."""
    timeout: float = 10.0
    """Seconds to wait for a ping's answer before the connection is closed."""
    permit_without_calls: bool = False
    """Also ping when no call is in flight (the server must allow it)."""


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings; with no fields set the system's root certificates are used."""

    root_certificates: bytes | None = None
    """PEM bundle of trusted CAs (None: the system's)."""
    private_key: bytes | None = None
    """PEM private key, for client-certificate (mutual) TLS."""
    certificate_chain: bytes | None = None
    """PEM certificate chain matching `private_key`."""
    server_hostname: str | None = None
    """Name to verify the server certificate against, if not the target's host."""

    @classmethod
    def from_files(
        cls,
        root_certificates: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        certificate_chain: str | os.PathLike[str] | None = None,
        server_hostname: str | None = None,
    ) -> TLSConfig:
        """Build a TLSConfig by reading PEM files (paths as str or pathlib.Path)."""

        # open(), not pathlib: importing pathlib would cost every `import apex_grpc` ~6 ms.
        def read(path: str | os.PathLike[str] | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as file:
                return file.read()

        return cls(
            read(root_certificates), read(private_key), read(certificate_chain), server_hostname
        )

    def __repr__(self) -> str:
        return (
            f"TLSConfig(root_certificates={'<pem>' if self.root_certificates else None}, "
            f"private_key={'<redacted>' if self.private_key else None}, "
            f"certificate_chain={'<pem>' if self.certificate_chain else None}, "
            f"server_hostname={self.server_hostname!r})"
        )
